"""Pretrained-weight import: logits parity with torch references, file formats, adaptations, errors.

The torch references use torchvision's (VGG, ResNet) and timm's (ViT) parameter names and layer
semantics, built from torch's own layers so the arithmetic is torch's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cam_jax import models
from cam_jax.models import resnet, vgg, vit, weights

torch = pytest.importorskip('torch')
nn = torch.nn
# pylint: disable=g-import-not-at-top,wrong-import-position
from cam_jax.testing.torch_reference import (
  TorchBasicBlock,
  TorchBottleneck,
  TorchResNet,
  TorchVGG,
  TorchViT,
)

_VGG_STAGES = ((8,), (16, 16))
_VIT = dict(patch=8, dim=32, depth=2, heads=4)


def _randomise(make, seed=0):
  """``make()`` in eval mode: seeded default init plus random norm affines, BatchNorm running
  statistics and ViT embeddings."""
  torch.manual_seed(seed)
  model = make()
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.2)
        m.running_var.uniform_(0.5, 2.0)
      if isinstance(m, TorchViT):
        m.cls_token.normal_(0, 0.5)
        m.pos_embed.normal_(0, 0.5)
  return model.eval()


def _images(channels, size, seed=1):
  return np.random.default_rng(seed).standard_normal((2, channels, size, size)).astype(np.float32)


def _torch_logits(model, x):
  with torch.no_grad():
    return model(torch.from_numpy(x)).numpy()


def _jax_logits(model, x):
  return np.asarray(model(jnp.asarray(x.transpose(0, 2, 3, 1))))


def _rel_err(got, ref):
  return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def _small_vgg(batch_norm, num_classes=5, in_channels=3, seed=3):
  return vgg.VGG(_VGG_STAGES, batch_norm=batch_norm, num_classes=num_classes,
                 in_channels=in_channels, hidden=32, rngs=nnx.Rngs(seed))


def _small_bottleneck(num_classes=5, in_channels=3, seed=3):
  return resnet.ResNet(resnet.Bottleneck, (1, 1, 1, 1), widths=(8, 16, 32, 64),
                       num_classes=num_classes, in_channels=in_channels, rngs=nnx.Rngs(seed))


def _small_vit(image_size=32, num_classes=5, in_channels=3, seed=3):
  return vit.ViT(image_size=image_size, num_classes=num_classes, in_channels=in_channels,
                 rngs=nnx.Rngs(seed), **_VIT)


_PARITY = {
    'vgg': (lambda: TorchVGG(_VGG_STAGES, False, 5, hidden=32), lambda: _small_vgg(False), 32),
    'vgg_bn': (lambda: TorchVGG(_VGG_STAGES, True, 5, hidden=32), lambda: _small_vgg(True), 32),
    'resnet18': (lambda: TorchResNet(TorchBasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), 5),
                 lambda: models.create('resnet18', num_classes=5, in_channels=3, image_size=64),
                 64),
    'bottleneck': (lambda: TorchResNet(TorchBottleneck, (1, 1, 1, 1), (8, 16, 32, 64), 5),
                   _small_bottleneck, 64),
    'vit': (lambda: TorchViT(32, num_classes=5, **_VIT), _small_vit, 32),
}


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(_PARITY))
def test_torch_checkpoint_gives_the_same_logits(family, tmp_path):
  make_torch, make_jax, size = _PARITY[family]
  ref_model = _randomise(make_torch)
  torch.save(ref_model.state_dict(), tmp_path / 'w.pth')
  model, skipped = weights.load_file(make_jax(), tmp_path / 'w.pth')
  x = _images(3, size)
  err = _rel_err(_jax_logits(model, x), _torch_logits(ref_model, x))
  print(f'{family}: relative logit error {err:.2e}')
  assert skipped == [] and err <= 1e-4


@pytest.mark.slow
def test_wrapped_checkpoint_and_safetensors_load_the_same(tmp_path):
  safetensors_numpy = pytest.importorskip('safetensors.numpy')
  ref_model = _randomise(lambda: TorchVGG(_VGG_STAGES, True, 5, hidden=32))
  state = ref_model.state_dict()
  torch.save({'state_dict': state, 'epoch': 3}, tmp_path / 'w.pt')
  safetensors_numpy.save_file({k: v.numpy() for k, v in state.items()}, tmp_path / 'w.safetensors')
  x = _images(3, 32)
  ref = _torch_logits(ref_model, x)
  for name in ('w.pt', 'w.safetensors'):
    model, _ = weights.load_file(_small_vgg(True), tmp_path / name)
    assert _rel_err(_jax_logits(model, x), ref) <= 1e-4, name


def _params(model):
  pure = nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat)))
  return {'.'.join(str(k.key) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(pure)[0]}


@pytest.mark.slow
def test_big_vision_npz_round_trip_and_layout(tmp_path):
  ref_model = _randomise(lambda: TorchViT(32, num_classes=5, **_VIT))
  source, _ = weights.load_state_dict(_small_vit(seed=0), ref_model.state_dict())
  weights.save_npz(source, tmp_path / 'vit.npz')
  loaded, _ = weights.load_file(_small_vit(seed=1), tmp_path / 'vit.npz')
  x = _images(3, 32)
  np.testing.assert_array_equal(_jax_logits(loaded, x), _jax_logits(source, x))
  assert _params(loaded).keys() == _params(source).keys()
  for k, v in _params(source).items():
    np.testing.assert_array_equal(_params(loaded)[k], v, err_msg=k)

  d, heads, hd, p, n = 32, 4, 8, 8, 16
  block = {'LayerNorm_0/scale': (d,), 'LayerNorm_0/bias': (d,), 'LayerNorm_2/scale': (d,),
           'LayerNorm_2/bias': (d,), 'MlpBlock_3/Dense_0/kernel': (d, 4 * d),
           'MlpBlock_3/Dense_0/bias': (4 * d,), 'MlpBlock_3/Dense_1/kernel': (4 * d, d),
           'MlpBlock_3/Dense_1/bias': (d,),
           **{f'MultiHeadDotProductAttention_1/{q}/kernel': (d, heads, hd)
              for q in ('query', 'key', 'value')},
           **{f'MultiHeadDotProductAttention_1/{q}/bias': (heads, hd)
              for q in ('query', 'key', 'value')},
           'MultiHeadDotProductAttention_1/out/kernel': (heads, hd, d),
           'MultiHeadDotProductAttention_1/out/bias': (d,)}
  expected = {'embedding/kernel': (p, p, 3, d), 'embedding/bias': (d,), 'cls': (1, 1, d),
              'pos_embedding': (1, n + 1, d), 'Transformer/encoder_norm/scale': (d,),
              'Transformer/encoder_norm/bias': (d,), 'head/kernel': (d, 5), 'head/bias': (5,),
              **{f'Transformer/encoderblock_{i}/{k}': s
                 for i in range(2) for k, s in block.items()}}
  with np.load(tmp_path / 'vit.npz') as npz:
    files = dict(npz)
  assert {k: v.shape for k, v in files.items()} == expected
  # q|k|v and head-major order pinned to timm's fused qkv weight (3D, D).
  qkv = ref_model.state_dict()['blocks.1.attn.qkv.weight'].numpy()
  np.testing.assert_array_equal(
      files['Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel'],
      qkv[d:2 * d].T.reshape(d, heads, hd))

  # big_vision's current layout: no class-token row in pos_embedding, its position in cls.
  pe = files.pop('pos_embedding')
  files.update(pos_embedding=pe[:, 1:], cls=files['cls'] + pe[:, :1])
  np.savez(tmp_path / 'bv.npz', **files)
  bv, _ = weights.load_file(_small_vit(seed=2), tmp_path / 'bv.npz')
  np.testing.assert_allclose(_jax_logits(bv, x), _jax_logits(source, x), rtol=1e-6, atol=1e-6)

  # An incomplete query/key/value triple is reported, never half-fused.
  del files['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/key/kernel']
  files['Transformer/extra/scale'] = np.zeros(3)
  np.savez(tmp_path / 'broken.npz', **files)
  with pytest.raises(ValueError) as err:
    weights.load_file(_small_vit(), tmp_path / 'broken.npz')
  for part in ("missing: ['blocks.0.attn.qkv.kernel']", 'Transformer/extra/scale',
               'encoderblock_0/MultiHeadDotProductAttention_1/query/kernel'):
    assert part in str(err.value)


@pytest.mark.slow
def test_other_class_count_keeps_the_fresh_head(tmp_path):
  ref_model = _randomise(
      lambda: TorchResNet(TorchBottleneck, (1, 1, 1, 1), (8, 16, 32, 64), 1000))
  torch.save(ref_model.state_dict(), tmp_path / 'w.pth')
  model, skipped = weights.load_file(_small_bottleneck(num_classes=1), tmp_path / 'w.pth')
  assert sorted(skipped) == ['fc.bias', 'fc.weight']
  fresh = _params(_small_bottleneck(num_classes=1))
  got = _params(model)
  np.testing.assert_array_equal(got['fc.kernel'], fresh['fc.kernel'])
  np.testing.assert_array_equal(got['fc.bias'], fresh['fc.bias'])
  state = ref_model.state_dict()
  np.testing.assert_array_equal(got['conv1.kernel'],
                                state['conv1.weight'].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(got['layer4.0.bn3.var'], state['layer4.0.bn3.running_var'].numpy())
  with pytest.raises(ValueError,
                     match=r'fc\.weight -> fc\.kernel: expected \(256, 1\), got \(256, 1000\)'):
    weights.load_file(_small_bottleneck(num_classes=1), tmp_path / 'w.pth', strict_head=True)


@pytest.mark.parametrize('family', ['vgg_bn', 'vit'])
def test_rgb_input_layer_folds_into_one_channel(family):
  make_torch, _, _ = _PARITY[family]
  make_jax = {'vgg_bn': lambda: _small_vgg(True, in_channels=1),
              'vit': lambda: _small_vit(in_channels=1)}[family]
  ref_model = _randomise(make_torch)
  model, _ = weights.load_state_dict(make_jax(), ref_model.state_dict())
  gray = _images(1, 32)
  err = _rel_err(_jax_logits(model, gray), _torch_logits(ref_model, np.repeat(gray, 3, axis=1)))
  assert err <= 1e-4


def _linear_field(grid, dim):
  """pos_embed whose patch rows are linear in the token centre's (row, col) in [0, 1]."""
  centres = (np.arange(grid) + 0.5) / grid
  rows, cols = np.meshgrid(centres, centres, indexing='ij')
  slopes = np.linspace(-2.0, 3.0, dim)
  field = rows[..., None] * slopes + cols[..., None] * slopes[::-1] + 0.25
  cls = np.full((1, 1, dim), 7.0)
  return np.concatenate([cls, field.reshape(1, grid * grid, dim)], axis=1).astype(np.float32)


def test_pos_embed_same_grid_is_unchanged_and_other_grids_interpolate_linearly():
  pe = np.random.default_rng(0).standard_normal((1, 17, 6)).astype(np.float32)
  np.testing.assert_allclose(weights.resize_pos_embed(pe, 4), pe, rtol=0, atol=1e-6)
  # Upsampling 4x4 -> 8x8: exact where the half-pixel sample lies inside the source grid
  # (rows/cols 1..6); downsampling 8x8 -> 4x4: exact everywhere (no antialiasing).
  for g_from, g_to, inner in ((4, 8, slice(1, 7)), (8, 4, slice(0, 4))):
    out = weights.resize_pos_embed(_linear_field(g_from, 6), g_to)
    want = _linear_field(g_to, 6)
    assert out.shape == want.shape
    np.testing.assert_array_equal(out[:, 0], want[:, 0])
    grid_out, grid_want = out[0, 1:].reshape(g_to, g_to, 6), want[0, 1:].reshape(g_to, g_to, 6)
    np.testing.assert_allclose(grid_out[inner, inner], grid_want[inner, inner], atol=1e-5)
    for r, c in ((inner.start, inner.start), (inner.start + 1, inner.stop - 1)):
      np.testing.assert_allclose(grid_out[r, c], grid_want[r, c], atol=1e-5)


@pytest.mark.slow
def test_vit_weights_load_at_another_image_size():
  ref_model = _randomise(lambda: TorchViT(32, num_classes=5, **_VIT))
  model, _ = weights.load_state_dict(_small_vit(image_size=64), ref_model.state_dict())
  pe = ref_model.state_dict()['pos_embed'].numpy()
  np.testing.assert_array_equal(np.asarray(model.pos_embed[...]), weights.resize_pos_embed(pe, 8))
  assert model(jnp.zeros((1, 64, 64, 3))).shape == (1, 5)


def test_mismatched_state_dict_names_every_problem_and_loads_nothing():
  state = _randomise(
      lambda: TorchResNet(TorchBottleneck, (1, 1, 1, 1), (8, 16, 32, 64), 5)).state_dict()
  state['layer1.0.conv_one.weight'] = state.pop('layer1.0.conv1.weight')
  state['layer2.0.bn1.running_mean'] = torch.zeros(17)
  state['extra.weight'] = torch.zeros(3, 3)
  model = _small_bottleneck()
  before = _params(model)
  with pytest.raises(ValueError) as err:
    weights.load_state_dict(model, state)
  message = str(err.value)
  for part in ("missing: ['layer1.0.conv1.kernel']", 'layer1.0.conv_one.weight', 'extra.weight',
               'layer2.0.bn1.running_mean -> layer2.0.bn1.mean: expected (16,), got (17,)'):
    assert part in message
  for k, v in _params(model).items():
    np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_unknown_file_format_is_an_error(tmp_path):
  with pytest.raises(ValueError, match='unknown weights format'):
    weights.load_file(_small_vit(), tmp_path / 'w.ckpt')


@pytest.mark.slow
def test_training_starts_from_init_from_weights(tmp_path, tiny_splits):
  """loop.train(init_from=...) loads a torchvision checkpoint: RGB stem folded, head fresh."""
  from cam_jax import presets  # pylint: disable=g-import-not-at-top
  from cam_jax.models import checkpoint  # pylint: disable=g-import-not-at-top
  from cam_jax.train import loop  # pylint: disable=g-import-not-at-top
  ref = _randomise(lambda: TorchResNet(TorchBasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), 1000))
  path = str(tmp_path / 'r18.pth')
  torch.save(ref.state_dict(), path)
  cfg = presets.train_config('tiny')
  cfg.epochs = 0  # the initial weights themselves
  recipe = checkpoint.recipe('resnet18', 1, 32, seed=0)
  logs = []
  model = loop.train(recipe, cfg, tiny_splits['train'], tiny_splits['validation'],
                     init_from=path, workdir=str(tmp_path / 'run'), log=logs.append).model
  stem = ref.conv1.weight.detach().numpy().sum(axis=1, keepdims=True).transpose(2, 3, 1, 0)
  np.testing.assert_allclose(model.conv1.kernel[...], stem, rtol=1e-6)
  np.testing.assert_allclose(model.layer4[1].bn2.mean[...], ref.layer4[1].bn2.running_mean,
                             rtol=1e-6)
  fresh = models.create(**recipe)
  np.testing.assert_array_equal(model.fc.kernel[...], fresh.fc.kernel[...])
  assert any('initialised from' in m and 'fc.weight' in m for m in logs)


def test_study_init_from_names_its_models():
  from cam_jax.study import cells, run  # pylint: disable=g-import-not-at-top
  from configs import study_phantom  # pylint: disable=g-import-not-at-top
  config = study_phantom.get_config('tiny')
  config.init_from = 'vgg_tiny_2=/w/r.pth, vit_tiny_1 = /w/v.npz'
  names = cells.architectures(config)
  assert run.init_paths(config, names) == {'vgg_tiny_2': '/w/r.pth', 'vit_tiny_1': '/w/v.npz'}
  config.init_from = 'resnet50=/w/r.pth'
  with pytest.raises(ValueError, match='not <model>=<path> with <model> one of: vgg_tiny_1'):
    run.init_paths(config, names)
