"""CAM parity with pytorch-grad-cam 1.5.x: the same weights and images give the same heat maps.

Each family (a torchvision-style ResNet with basic blocks at 128 px, layer4 a 4x4 grid; a VGG with
batch norm at 56 px, features.13 a 14x14 grid; a timm-style ViT at 32 px with 8 px patches,
blocks.1.norm1 a 4x4 grid) is built in torch (``cam_jax.testing.torch_reference``) with seeded
random weights, BatchNorm statistics measured on random images and a head bias that centres the
logits (so that images predict different classes), loaded into the matching cam_jax model, and
explained by both libraries for 3 images with 3 different target classes: by pytorch-grad-cam
through its own API (``GradCAM(model=..., target_layers=[...], reshape_transform=...)`` called with
one ``ClassifierOutputTarget`` per image) and by cam_jax through
``postprocess(cam_function(model, method, layer)[0](...)[0], (H, W))[0]``. Max abs difference
<= 1e-4 (maps in [0, 1]) at two levels:

* ``test_raw_maps_match_pytorch_grad_cam``: cam_jax's raw maps put through pytorch-grad-cam's own
  postprocess (``_pgc_postprocess``) -- the CAM itself;
* ``test_heat_maps_match_pytorch_grad_cam``: cam_jax's heat maps from ``cams.postprocess``.

Methods: every cam_jax name in ``_PYTORCH_GRAD_CAM`` is tested, and must be both in
``cam_jax.cams.METHODS`` and a class of the pinned pytorch-grad-cam.

Requirements: torch, and pytorch-grad-cam installed WITHOUT its dependencies,
``pip install --no-deps grad-cam==1.5.5``: its declared dependencies pull PyPI's torchvision,
which does not import beside the torch this project pins. What it does import comes with the
``test`` extra (opencv-python-headless, ttach, scikit-learn; tqdm, scipy, matplotlib, pillow
come with cam_jax). This module is skipped when pytorch-grad-cam (or one of those) is missing.

torchvision stand-in: pytorch_grad_cam imports torchvision when imported (``torchvision.transforms``
``Compose``/``Normalize``/``ToTensor`` and ``torchvision.ops``, none of which these tests call).
Where ``import torchvision`` fails, ``cam_jax/testing/pytorch_grad_cam_import.py`` puts a minimal
stand-in ``torchvision`` package (those names, each raising NotImplementedError when called) into
``sys.modules`` BEFORE importing pytorch_grad_cam, and removes it right after that import; where
torchvision imports, it is used as is.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cam_jax import cams
from cam_jax.models import resnet, vgg, vit, weights

torch = pytest.importorskip('torch')
# pylint: disable=g-import-not-at-top,wrong-import-position
from cam_jax.testing import pytorch_grad_cam_import
from cam_jax.testing.torch_reference import TorchBasicBlock, TorchResNet, TorchVGG, TorchViT

try:
  pgc = pytorch_grad_cam_import.import_pytorch_grad_cam()
except ImportError as err:
  pytest.skip(f'pytorch-grad-cam not importable ({err}); install it with '
              '`pip install --no-deps grad-cam==1.5.5` beside the test extra',
              allow_module_level=True)
from pytorch_grad_cam.utils import image as pgc_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

nn = torch.nn
TOL = 1e-4
CLASSES = (4, 3, 1)  # one target per image, all different; maps of both signs
NUM_CLASSES = 5

# cam_jax method name -> pytorch-grad-cam class name.
_PYTORCH_GRAD_CAM = {
    'gradcam': 'GradCAM',
    'hirescam': 'HiResCAM',
    'gradcam++': 'GradCAMPlusPlus',
    'xgradcam': 'XGradCAM',
    'layercam': 'LayerCAM',
    'gradcam_elementwise': 'GradCAMElementWise',
    'eigencam': 'EigenCAM',
    'eigengradcam': 'EigenGradCAM',
    'scorecam': 'ScoreCAM',
    'ablationcam': 'AblationCAM',
}

_RESNET_WIDTHS = (8, 16, 16, 32)
_VGG_STAGES = ((8,), (16,), (16, 16))  # features.13: the last ReLU, a 14x14 grid at 56 px
_VIT = dict(patch=8, dim=32, depth=2, heads=4)


def _vit_reshape(grid):
  """pytorch-grad-cam's ViT reshape: drop the class token, tokens (B, g*g, C) -> (B, C, g, g)."""
  def reshape(tokens):
    b, _, c = tokens.shape
    return tokens[:, 1:, :].reshape(b, grid, grid, c).permute(0, 3, 1, 2)
  return reshape


# family -> (torch model, cam_jax model, image size, torch target layer, cam_jax layer,
#            pytorch-grad-cam reshape_transform)
_FAMILIES = {
    'resnet': (lambda: TorchResNet(TorchBasicBlock, (1, 1, 1, 1), _RESNET_WIDTHS, NUM_CLASSES),
               lambda: resnet.ResNet(resnet.BasicBlock, (1, 1, 1, 1), widths=_RESNET_WIDTHS,
                                     num_classes=NUM_CLASSES, in_channels=3, rngs=nnx.Rngs(0)),
               128, lambda m: m.layer4, 'layer4', None),
    'vgg_bn': (lambda: TorchVGG(_VGG_STAGES, True, NUM_CLASSES, hidden=32),
               lambda: vgg.VGG(_VGG_STAGES, batch_norm=True, num_classes=NUM_CLASSES,
                               in_channels=3, hidden=32, rngs=nnx.Rngs(0)),
               56, lambda m: m.features[13], 'features.13', None),
    'vit': (lambda: TorchViT(32, num_classes=NUM_CLASSES, **_VIT),
            lambda: vit.ViT(image_size=32, num_classes=NUM_CLASSES, in_channels=3,
                            rngs=nnx.Rngs(0), **_VIT),
            32, lambda m: m.blocks[-1].norm1, 'blocks.1.norm1', _vit_reshape(32 // _VIT['patch'])),
}


@pytest.fixture(autouse=True, scope='module')
def _one_torch_thread():
  """torch on one thread here: beside JAX's threads on a small machine, its default pool turned
  millisecond passes of these small models into ~0.5 s ones."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _randomise(make, seed, calibration):
  """``make()`` in eval mode: seeded default init, random norm affines and ViT embeddings, and
  BatchNorm statistics measured on ``calibration`` images (NCHW). Random running statistics
  would leave the layer's activations nearly constant over space and every Grad-CAM map of one
  sign, which tests little; measured ones give maps of both signs."""
  torch.manual_seed(seed)
  model = make()
  bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
      if isinstance(m, TorchViT):
        m.cls_token.normal_(0, 0.5)
        m.pos_embed.normal_(0, 0.5)
    for m in bns:
      m.reset_running_stats()
      m.momentum = None  # a cumulative average: exactly this batch's statistics
    model.train()
    model(torch.from_numpy(calibration))
  for m in bns:
    m.momentum = 0.1
  return model.eval()


@functools.lru_cache(maxsize=None)
def _family(name):
  """(torch model, cam_jax model with its weights, images NCHW (3, 3, S, S))."""
  make_torch, make_jax, size, *_ = _FAMILIES[name]
  rng = np.random.default_rng(2)
  images = rng.standard_normal((3, 3, size, size)).astype(np.float32)
  calibration = rng.standard_normal((8, 3, size, size)).astype(np.float32)
  ref = _randomise(make_torch, 1, calibration)
  with torch.no_grad():  # centre the logits over these images: their predictions then differ
    head = [m for m in ref.modules() if isinstance(m, nn.Linear)][-1]
    head.bias -= ref(torch.from_numpy(images)).mean(dim=0)
  # Every parameter and statistic comes from torch, so the cam_jax model is built abstractly
  # (nnx.eval_shape: no random init, which costs seconds of eager compiles) and loaded.
  model, skipped = weights.load_state_dict(nnx.eval_shape(make_jax), ref.state_dict())
  assert skipped == []
  return ref, _materialise(model), images


def _materialise(model):
  """``model`` with the abstract leaves no state dict fills (dropout RNG keys and counts) made
  concrete: key 0 and zeros."""
  graphdef, state = nnx.split(model)

  def fill(x):
    if not isinstance(x, jax.ShapeDtypeStruct):
      return x
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jnp.broadcast_to(jax.random.key(0), x.shape)
    return jnp.zeros(x.shape, x.dtype)

  state = jax.tree.map(fill, state)
  assert not any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state))
  return nnx.merge(graphdef, state)


def _reference(name, method, targets, *, layers=None, **options):
  """pytorch-grad-cam's heat maps (B, H, W) for ``targets`` (a list of its target objects, or
  None for the predicted classes); ``layers``: torch target layers (default: the family's one);
  ``options``: ``aug_smooth`` / ``eigen_smooth``."""
  ref, _, images = _family(name)
  _, _, _, torch_layer, _, reshape = _FAMILIES[name]
  kwargs = {}
  if method == 'ablationcam' and name == 'vit':
    kwargs['ablation_layer'] = pgc.AblationLayerVit()
  cam = getattr(pgc, _PYTORCH_GRAD_CAM[method])(
      model=ref, target_layers=layers or [torch_layer(ref)], reshape_transform=reshape, **kwargs)
  try:
    return cam(input_tensor=torch.from_numpy(images), targets=targets, **options)
  finally:
    cam.activations_and_grads.release()


@functools.lru_cache(maxsize=None)
def _cam_function(name, method):
  _, model, _ = _family(name)
  return cams.cam_function(model, method, _FAMILIES[name][4])


def _cam_jax(name, method, targets):
  """cam_jax's (heat maps (B, H, W) from ``cams.postprocess``, raw maps (B, h, w), logits) for
  ``targets`` (B,)."""
  _, _, images = _family(name)
  fn, state, _ = _cam_function(name, method)
  raw, logits = fn(state, jnp.asarray(images.transpose(0, 2, 3, 1)), jnp.asarray(targets))
  heat, flags = cams.postprocess(raw, images.shape[2:])
  assert not np.any(np.asarray(flags)), 'non-finite raw maps'
  return np.asarray(heat), np.asarray(raw), np.asarray(logits)


def _pgc_postprocess(raw, image_hw):
  """cam_jax's raw maps (B, h, w) through pytorch-grad-cam's own postprocess, called as
  ``BaseCAM.forward`` calls it for one target layer: ReLU, ``scale_cam_image`` to the image size
  (min-max, then cv2.resize), ``aggregate_multi_layers`` (ReLU, mean over the one layer, and
  ``scale_cam_image`` once more: a second min-max, after the resize)."""
  per_layer = pgc_image.scale_cam_image(np.maximum(raw, 0), image_hw[::-1])[:, None]
  return pgc_image.scale_cam_image(np.mean(np.maximum(per_layer, 0), axis=1))


@functools.lru_cache(maxsize=None)
def _explained(family, method):
  """(pytorch-grad-cam's heat maps, cam_jax's heat maps, raw maps, logits) for CLASSES."""
  want = _reference(family, method, _per_image_targets())
  return (want, *_cam_jax(family, method, np.array(CLASSES, np.int32)))


def _require(method):
  assert method in cams.METHODS, f'cam_jax.cams.METHODS lacks {method!r}'
  assert hasattr(pgc, _PYTORCH_GRAD_CAM[method]), (
      f'pytorch-grad-cam lacks {_PYTORCH_GRAD_CAM[method]}')



def _max_abs(got, want):
  assert got.shape == want.shape, (got.shape, want.shape)
  return np.abs(got - want).max(axis=(1, 2))


@pytest.mark.parametrize('family', sorted(_FAMILIES))
@pytest.mark.parametrize('method', list(_PYTORCH_GRAD_CAM))
def test_raw_maps_match_pytorch_grad_cam(method, family):
  """cam_jax's raw maps, put through pytorch-grad-cam's own postprocess, give its heat maps:
  the CAM itself (layer, activation, gradient or extra forward passes, target, weighting)
  agrees, whatever cam_jax's postprocess does."""
  _require(method)
  ref_model, _, images = _family(family)
  want, _, raw, logits = _explained(family, method)
  with torch.no_grad():
    np.testing.assert_allclose(logits, ref_model(torch.from_numpy(images)).numpy(),
                               rtol=1e-4, atol=1e-4)
  err = _max_abs(_pgc_postprocess(raw, images.shape[2:]), want)
  print(f'{method} {family}: raw maps, max abs difference per image {err}')
  assert err.max() <= TOL, f'{method} on {family}: max abs differences per image {err}'


@pytest.mark.parametrize('family', sorted(_FAMILIES))
@pytest.mark.parametrize('method', list(_PYTORCH_GRAD_CAM))
def test_heat_maps_match_pytorch_grad_cam(method, family):
  """``cams.postprocess`` of cam_jax's raw maps equals pytorch-grad-cam's heat maps."""
  _require(method)
  want, got, _, _ = _explained(family, method)
  assert got.shape == want.shape == (3, *_family(family)[2].shape[2:])
  err = _max_abs(got, want)
  print(f'{method} {family}: heat maps, max abs difference per image {err}')
  assert err.max() <= TOL, f'{method} on {family}: max abs differences per image {err}'


def test_one_target_for_a_batch_explains_only_the_first_image():
  """pytorch-grad-cam zips targets with images: ONE target for a batch of 3 back-propagates
  the first image's score only, and the other two maps come out all zero. cam_jax takes one
  target per image (B,); it equals pytorch-grad-cam given the per-image target list.

  Compared through pytorch-grad-cam's postprocess (``_pgc_postprocess``): this is about targets;
  ``test_heat_maps_match_pytorch_grad_cam`` covers cam_jax's postprocess."""
  family, hw = 'resnet', _family('resnet')[2].shape[2:]
  _, raw, _ = _cam_jax(family, 'gradcam', np.array(CLASSES, np.int32))
  got = _pgc_postprocess(raw, hw)
  per_image = _reference(family, 'gradcam', [ClassifierOutputTarget(c) for c in CLASSES])
  one = _reference(family, 'gradcam', [ClassifierOutputTarget(CLASSES[0])])
  assert _max_abs(got, per_image).max() <= TOL
  assert _max_abs(got[:1], one[:1]).max() <= TOL
  assert np.all(one[1:] == 0) and np.all(got[1:].max(axis=(1, 2)) > 0.99)
  # The classes differ per image and so do the maps: a target broadcast to the whole batch, or
  # taken from the wrong image, would show.
  _, same_raw, _ = _cam_jax(family, 'gradcam', np.full(3, CLASSES[0], np.int32))
  assert _max_abs(_pgc_postprocess(same_raw, hw)[1:], got[1:]).min() > 0.05


@pytest.mark.parametrize('family', ['resnet', 'vit'])
def test_predicted_class_target_matches_targets_none(family):
  """cam_jax's target -1 (the predicted class) equals pytorch-grad-cam's ``targets=None``
  (the argmax per image), compared through pytorch-grad-cam's postprocess."""
  hw = _family(family)[2].shape[2:]
  _, raw, logits = _cam_jax(family, 'gradcam', np.full(3, -1, np.int32))
  predicted = np.argmax(logits, axis=-1).astype(np.int32)
  assert len(set(predicted.tolist())) > 1, 'every image predicts one class: a weak test'
  np.testing.assert_array_equal(raw, _cam_jax(family, 'gradcam', predicted)[1])
  assert _max_abs(_pgc_postprocess(raw, hw), _reference(family, 'gradcam', None)).max() <= TOL


def _per_image_targets():
  return [ClassifierOutputTarget(c) for c in CLASSES]


@pytest.mark.parametrize('family', sorted(_FAMILIES))
def test_eigen_smooth_matches_pytorch_grad_cam(family):
  """``eigen_smooth``: the first principal component of the weighted activations replaces
  their channel sum (pytorch-grad-cam's ``get_2d_projection``, sign as the SVD returns it)."""
  _require('gradcam')
  _, model, images = _family(family)
  want = _reference(family, 'gradcam', _per_image_targets(), eigen_smooth=True)
  fn, state, _ = cams.cam_function(model, 'gradcam', _FAMILIES[family][4], eigen_smooth=True)
  raw, _ = fn(state, jnp.asarray(images.transpose(0, 2, 3, 1)), jnp.asarray(CLASSES))
  raw_err = _max_abs(_pgc_postprocess(np.asarray(raw), images.shape[2:]), want)
  heat_err = _max_abs(np.asarray(cams.postprocess(raw, images.shape[2:])[0]), want)
  print(f'eigen_smooth {family}: raw maps {raw_err}, heat maps {heat_err}')
  assert raw_err.max() <= TOL, f'raw maps through pytorch-grad-cam postprocess: {raw_err}'
  assert heat_err.max() <= TOL, f'heat maps: {heat_err}'


def test_aug_smooth_matches_pytorch_grad_cam():
  """``heat_function(aug_smooth=True)``: the mean heat map over pytorch-grad-cam's default
  ttach transforms (horizontal flip x multiply by 0.9, 1, 1.1), each flipped back."""
  family = 'resnet'
  _, model, images = _family(family)
  want = _reference(family, 'gradcam', _per_image_targets(), aug_smooth=True)
  fn, state, _ = cams.heat_function(model, 'gradcam', _FAMILIES[family][4], aug_smooth=True)
  heat, flags, _ = fn(state, jnp.asarray(images.transpose(0, 2, 3, 1)), jnp.asarray(CLASSES))
  assert not np.any(np.asarray(flags))
  err = _max_abs(np.asarray(heat), want)
  print(f'aug_smooth {family}: heat maps {err}')
  assert err.max() <= TOL, f'heat maps: {err}'


def test_two_layers_aggregate_as_pytorch_grad_cam():
  """Several target layers: each map postprocessed, then averaged and min-maxed again
  (pytorch-grad-cam's ``aggregate_multi_layers``)."""
  family = 'resnet'
  ref, model, images = _family(family)
  want = _reference(family, 'gradcam', _per_image_targets(), layers=[ref.layer3, ref.layer4])
  fn, state, _ = cams.cam_function(model, 'gradcam', ['layer3', 'layer4'])
  raws, _ = fn(state, jnp.asarray(images.transpose(0, 2, 3, 1)), jnp.asarray(CLASSES))
  heat, _ = cams.postprocess(tuple(raws), images.shape[2:])
  err = _max_abs(np.asarray(heat), want)
  print(f'layer3+layer4 {family}: heat maps {err}')
  assert err.max() <= TOL, f'heat maps: {err}'
