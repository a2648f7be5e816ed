"""The CAM family against independent NumPy computations on a global-average-pool + dense head,
where the gradient at the last stage is known in closed form (W_c / (h*w) everywhere)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cam_jax import cams, models
from cam_jax.core import mesh as mesh_lib

SIZE = 64


@pytest.fixture(scope='module')
def setup():
  model = models.create('resnet_tiny', image_size=SIZE, num_classes=3, seed=11)
  images = jax.random.normal(jax.random.key(12), (3, SIZE, SIZE, 1))
  targets = jnp.array([0, 2, 1])
  taps = models.Taps(record=['layer4'])
  logits = model(images, taps=taps)
  act = np.asarray(taps.acts['layer4'], np.float64)           # (B, h, w, C)
  w = np.asarray(model.fc.kernel[...], np.float64)            # (C, K)
  h, wd = act.shape[1:3]
  grad = np.stack([np.broadcast_to(w[:, int(t)] / (h * wd), act.shape[1:]) for t in targets])
  return model, images, targets, act, grad, np.asarray(logits)


def _cam(model, method, images, targets, **kw):
  fn, state, _ = cams.cam_function(model, method, **kw)
  return np.asarray(fn(state, images, targets)[0], np.float64)


def _numpy_reference(method, a, g):
  """pytorch-grad-cam's formulas, written out in NumPy for one image (h, w, C)."""
  s = a.sum(axis=(0, 1))
  if method == 'gradcam':
    return (a * g.mean(axis=(0, 1))).sum(-1)
  if method == 'hirescam':
    return (a * g).sum(-1)
  if method == 'gradcam_elementwise':
    return np.maximum(a * g, 0).sum(-1)
  if method == 'xgradcam':
    return (a * ((g * a).sum(axis=(0, 1)) / (s + 1e-7))).sum(-1)
  if method == 'gradcam++':
    alpha = g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6)
    alpha = np.where(g != 0, alpha, 0)
    return (a * (np.maximum(g, 0) * alpha).sum(axis=(0, 1))).sum(-1)
  if method == 'layercam':
    return (np.maximum(g, 0) * a).sum(-1)
  raise KeyError(method)


@pytest.mark.parametrize('method', ['gradcam', 'hirescam', 'gradcam_elementwise', 'xgradcam',
                                    'gradcam++', 'layercam'])
def test_gradient_methods_match_numpy_on_closed_form_gradients(setup, method):
  model, images, targets, act, grad, _ = setup
  got = _cam(model, method, images, targets)
  for i in range(len(images)):
    np.testing.assert_allclose(got[i], _numpy_reference(method, act[i], grad[i]), rtol=2e-4,
                               atol=1e-6)


def test_hirescam_equals_gradcam_for_a_gap_dense_head(setup):
  """With a constant gradient over space, the element-wise and the averaged forms agree."""
  model, images, targets, *_ = setup
  np.testing.assert_allclose(_cam(model, 'hirescam', images, targets),
                             _cam(model, 'gradcam', images, targets), rtol=1e-5, atol=1e-7)


def test_eigencam_is_the_first_principal_component(setup):
  model, images, targets, act, *_ = setup
  got = _cam(model, 'eigencam', images, targets)
  for i in range(len(images)):
    flat = act[i].reshape(-1, act.shape[-1])
    flat = flat - flat.mean(0)
    ref = (flat @ np.linalg.svd(flat)[2][0]).reshape(act.shape[1:3])
    sign = np.sign(np.sum(got[i] * ref))  # a principal axis has no sign
    # float32 SVD on device vs float64 here: compare on the map's scale
    np.testing.assert_allclose(got[i], sign * ref, atol=1e-4 * np.abs(ref).max())


def test_eigen_smooth_projects_the_weighted_activations(setup):
  model, images, targets, act, grad, _ = setup
  got = _cam(model, 'layercam', images, targets, eigen_smooth=True)
  weighted = np.maximum(grad[0], 0) * act[0]
  flat = weighted.reshape(-1, act.shape[-1])
  flat = flat - flat.mean(0)
  ref = (flat @ np.linalg.svd(flat)[2][0]).reshape(act.shape[1:3])
  np.testing.assert_allclose(np.abs(got[0]), np.abs(ref), atol=1e-4 * np.abs(ref).max())


def _upsample_align_corners(a, size):
  """(h, w) -> (size, size) bilinear with corners aligned, by explicit loops."""
  h, w = a.shape
  out = np.empty((size, size))
  for i in range(size):
    y = i * (h - 1) / (size - 1)
    y0 = min(int(np.floor(y)), h - 1)
    y1, fy = min(y0 + 1, h - 1), y - y0
    for j in range(size):
      x = j * (w - 1) / (size - 1)
      x0 = min(int(np.floor(x)), w - 1)
      x1, fx = min(x0 + 1, w - 1), x - x0
      out[i, j] = ((1 - fy) * ((1 - fx) * a[y0, x0] + fx * a[y0, x1]) +
                   fy * ((1 - fx) * a[y1, x0] + fx * a[y1, x1]))
  return out


@pytest.mark.slow
def test_scorecam_matches_a_channel_by_channel_loop(setup):
  model, images, targets, act, _, _ = setup
  got = _cam(model, 'scorecam', images[:1], targets[:1], chunk=5)
  a, x, c = act[0], np.asarray(images[0]), int(targets[0])
  scores = []
  for k in range(a.shape[-1]):
    m = _upsample_align_corners(a[..., k], SIZE)
    m = (m - m.min()) / (m.max() - m.min() + 1e-8)
    scores.append(float(model(jnp.asarray((x * m[..., None])[None], jnp.float32))[0, c]))
  weights = np.exp(np.array(scores) - max(scores))
  weights /= weights.sum()
  np.testing.assert_allclose(got[0], (a * weights).sum(-1), rtol=1e-4, atol=1e-6)


def test_ablationcam_matches_the_closed_form_head(setup):
  """Ablating channel k of layer4 changes the logit by W[k, c] * mean(A_k) exactly."""
  model, images, targets, act, _, logits = setup
  got = _cam(model, 'ablationcam', images, targets, chunk=7)
  w = np.asarray(model.fc.kernel[...], np.float64)
  for i, t in enumerate(np.asarray(targets)):
    original = logits[i, t]
    drop = w[:, t] * act[i].mean(axis=(0, 1))     # min(act) == 0 after ReLU: ablate to 0
    assert act[i].min() == 0
    ref = (act[i] * (drop / original)).sum(-1)
    np.testing.assert_allclose(got[i], ref, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_chunk_size_does_not_change_perturbation_maps(setup):
  model, images, targets, *_ = setup
  for method in ('scorecam', 'ablationcam'):
    np.testing.assert_allclose(_cam(model, method, images, targets, chunk=4),
                               _cam(model, method, images, targets, chunk=64), rtol=1e-5,
                               atol=1e-6)


def test_several_layers_aggregate_like_pytorch_grad_cam(setup):
  model, images, targets, *_ = setup
  fn, state, layers = cams.cam_function(model, 'gradcam', ['layer3', 'layer4'])
  assert layers == ('layer3', 'layer4')
  raws, _ = fn(state, images, targets)
  heat, _ = cams.postprocess(raws, (SIZE, SIZE))

  def one_layer(r):  # ReLU, min-max, resize: pytorch-grad-cam's compute_cam_per_layer
    r = np.maximum(np.asarray(r), 0)
    r = r - r.min(axis=(1, 2), keepdims=True)
    r = r / (1e-7 + r.max(axis=(1, 2), keepdims=True))
    return np.asarray(jax.image.resize(r, (r.shape[0], SIZE, SIZE), 'linear'))

  mean = np.mean([one_layer(r) for r in raws], axis=0)
  mean = mean - mean.min(axis=(1, 2), keepdims=True)
  mean = mean / (1e-7 + mean.max(axis=(1, 2), keepdims=True))
  np.testing.assert_allclose(heat, mean, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('method', ['gradcam', 'gradcam++', 'scorecam', 'eigencam'])
def test_maps_on_8_devices_equal_1_device(setup, method):
  model, images, _, _, _, _ = setup
  images = jnp.concatenate([images] * 3)[:8]
  targets = jnp.array([0, 1, 2, -1, 0, 1, 2, -1])
  one = _cam(model, method, images, targets)
  sharded = mesh_lib.shard_batch({'image': np.asarray(images), 'target': np.asarray(targets)},
                                 mesh_lib.make_mesh())
  eight = _cam(model, method, sharded['image'], sharded['target'])
  # |.|: an Eigen-CAM axis has no sign; atol on the map's scale for its float32 SVD
  np.testing.assert_allclose(np.abs(eight), np.abs(one), rtol=1e-4,
                             atol=1e-5 * np.abs(one).max())


@pytest.mark.slow
def test_attention_rollout_matches_a_numpy_rollout():
  model = models.create('vit_tiny', image_size=SIZE, seed=13)
  images = jax.random.normal(jax.random.key(14), (2, SIZE, SIZE, 1))
  fn, state, layer = cams.cam_function(model, 'rollout')
  assert layer == 'attention'
  got = np.asarray(fn(state, images, jnp.ones(2, jnp.int32))[0])
  taps = models.Taps(record=model.attention_layers)
  model(images, taps=taps)
  for i in range(2):
    result = np.eye(taps.acts['blocks.0.attn'].shape[-1])
    for name in model.attention_layers:
      a = np.asarray(taps.acts[name][i], np.float64).mean(0)
      a = 0.5 * a + 0.5 * np.eye(len(a))
      result = (a / a.sum(-1, keepdims=True)) @ result
    np.testing.assert_allclose(got[i], result[0, 1:].reshape(model.grid, model.grid), rtol=1e-4)
  with pytest.raises(ValueError, match='reads every attention layer of a ViT'):
    cams.cam_function(models.create('resnet_tiny', image_size=32), 'rollout')


def test_aug_smooth_averages_flipped_and_scaled_maps(setup):
  model, images, targets, *_ = setup
  fn, state, _ = cams.cam_function(model, 'gradcam')
  heat_fn, _, _ = cams.heat_function(model, 'gradcam', aug_smooth=True)
  got, flags, logits = heat_fn(state, images, targets)
  maps = []
  for flip in (False, True):
    for factor in (0.9, 1.0, 1.1):
      x = np.asarray(images)[:, :, ::-1] if flip else np.asarray(images)
      raw, _ = fn(state, jnp.asarray(x * factor), targets)
      h = np.asarray(cams.postprocess(raw, (SIZE, SIZE))[0])
      maps.append(h[:, :, ::-1] if flip else h)
  np.testing.assert_allclose(got, np.mean(maps, axis=0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, model(images), rtol=1e-5)
  plain, _, _ = cams.heat_function(model, 'gradcam')[0](state, images, targets)
  assert not np.allclose(got, plain)


def test_a_vit_layer_the_logit_does_not_read_is_refused_for_logit_methods():
  """At a ViT's last block output the logit does not depend on the patch tokens (their
  gradient is exactly 0, checked here with jax.grad): Grad-CAM and Ablation-CAM there are
  refused with the reason; EigenCAM, which needs no logit, still runs there."""
  model = models.create('vit_tiny', image_size=32, seed=1)
  last = f'blocks.{len(model.blocks) - 1}'
  images = jax.random.normal(jax.random.key(2), (2, 32, 32, 1))
  taps = models.Taps(record=[last])
  model(images, taps=taps)
  act = taps.acts[last]

  def logit_of_patches(patches):
    x = jnp.concatenate([act[:, :1], patches], axis=1)
    return model.head(model.norm(x)[:, 0]).sum()

  assert not np.any(np.asarray(jax.grad(logit_of_patches)(act[:, 1:])))
  for method in ('gradcam', 'ablationcam'):
    with pytest.raises(ValueError, match=rf"'{method}' cannot explain ViT layer '{last}': the "
                                         'head reads only the class token'):
      cams.cam_function(model, method, last)
  assert _cam(model, 'eigencam', images, jnp.ones(2, jnp.int32), layer=last).shape == (2, 2, 2)
  assert np.any(_cam(model, 'gradcam', images, jnp.ones(2, jnp.int32), layer=f'{last}.norm1'))
