"""Grad-CAM against independent computations: hand-composed per-image gradients, the closed-form
CAM of a global-average-pool + dense head, a NumPy postprocess, and per-image loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cam_jax import cams, models
from cam_jax.models import layers

SIZE = 64


def _images(n=3, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, SIZE, SIZE, 1))


def _head_resnet(model):
  """logits as a function of layer4's activation, written out by hand (GAP + fc)."""
  return lambda a: model.fc(jnp.mean(a, axis=(1, 2)))


def _head_vgg(model):
  """logits from the last ReLU (features.20): max pool, adaptive pool, classifier."""
  def head(a):
    x = layers.max_pool(a, 2, 2)
    x = layers.adaptive_avg_pool(x, (model.pool_size, model.pool_size)).reshape(a.shape[0], -1)
    for f in model.classifier:
      x = f(x, deterministic=True) if hasattr(f, 'rate') else f(x)
    return x
  return head


def _head_vit(model, block_input):
  """logits from the last block's norm1 output, given that block's input (the residual)."""
  blk = model.blocks[len(model.blocks) - 1]

  def head(n):
    x = block_input + blk.attn(n)
    x = x + blk.mlp(blk.norm2(x))
    return model.head(model.norm(x)[:, 0])
  return head


@pytest.mark.slow
@pytest.mark.parametrize('name', ['resnet_tiny', 'vgg_tiny', 'vit_tiny'])
def test_gradcam_equals_per_image_grad_of_hand_composed_head(name):
  model = models.create(name, image_size=SIZE, seed=1)
  fn, state, layer = cams.cam_function(model)
  images = _images()
  targets = jnp.array([1, -1, 1])
  raw, logits = fn(state, images, targets)
  np.testing.assert_allclose(logits, model(images), rtol=1e-5, atol=1e-6)
  for i in range(len(images)):
    x = images[i:i + 1]
    record = [layer] + ([f'blocks.{len(model.blocks) - 2}'] if name == 'vit_tiny' else [])
    taps = models.Taps(record=record)
    model(x, taps=taps)
    act = taps.acts[layer]
    head = (_head_vit(model, taps.acts[record[1]]) if name == 'vit_tiny' else
            _head_resnet(model) if name == 'resnet_tiny' else _head_vgg(model))
    np.testing.assert_allclose(head(act)[0], logits[i], rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda a: targets[i] * head(a)[0, 0])(act)
    a, g = model.to_grid(layer, act)[0], model.to_grid(layer, grad)[0]
    expected = np.einsum('hwc,c->hw', a, np.mean(g, axis=(0, 1)))
    np.testing.assert_allclose(raw[i], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_gradcam_equals_closed_form_cam_for_gap_dense_head():
  """Zhou et al. 2016 CAM: sum_c w_c A_c; Grad-CAM equals it up to the positive scale 1/(h*w)."""
  model = models.create('resnet_tiny', image_size=SIZE, num_classes=4, seed=2)
  fn, state, layer = cams.cam_function(model)
  images = _images(4, seed=3)
  targets = jnp.array([0, 3, 2, -1])  # -1: the predicted class
  raw, logits = fn(state, images, targets)
  taps = models.Taps(record=[layer])
  model(images, taps=taps)
  act = np.asarray(taps.acts[layer])
  weights = np.asarray(model.fc.kernel[...])
  for i in range(4):
    c = int(targets[i]) if targets[i] >= 0 else int(np.argmax(logits[i]))
    cam = act[i] @ weights[:, c]
    scale = cam.ravel() @ np.asarray(raw[i]).ravel() / (np.asarray(raw[i]).ravel() ** 2).sum()
    assert scale > 0
    np.testing.assert_allclose(scale, act.shape[1] * act.shape[2], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(raw[i]) * scale, cam, rtol=1e-4, atol=1e-5)


def test_binary_targets_sign_and_prediction():
  model = models.create('resnet_tiny', image_size=SIZE, seed=4)
  fn, state, _ = cams.cam_function(model)
  images = _images(4, seed=5)
  pos, logits = fn(state, images, jnp.ones(4, jnp.int32))
  neg, _ = fn(state, images, -jnp.ones(4, jnp.int32))
  pred, _ = fn(state, images, jnp.full(4, cams.PREDICTED, jnp.int32))
  np.testing.assert_allclose(neg, -pos, rtol=1e-6)
  sign = np.where(np.asarray(logits[:, 0]) >= 0, 1.0, -1.0)
  np.testing.assert_allclose(pred, pos * sign[:, None, None], rtol=1e-6)


@pytest.mark.slow
def test_vmapped_batch_equals_single_image_calls():
  model = models.create('vit_tiny', image_size=SIZE, seed=6)
  fn, state, _ = cams.cam_function(model)
  images, targets = _images(3, seed=7), jnp.array([1, -1, 1])
  batch, _ = fn(state, images, targets)
  for i in range(3):
    one, _ = fn(state, images[i:i + 1], targets[i:i + 1])
    np.testing.assert_allclose(batch[i], one[0], rtol=1e-5, atol=1e-6)


def _bilinear_reference(img, out_h, out_w):
  """OpenCV INTER_LINEAR semantics: half-pixel centres, coordinates clamped at the edges."""
  h, w = img.shape
  ys = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
  xs = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
  top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
  bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
  return top * (1 - fy) + bottom * fy


def test_postprocess_matches_pytorch_grad_cam_order():
  raw = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
  raw[2] = -1.0  # all negative: ReLU gives a zero map, flagged constant
  heat, flags = cams.postprocess(jnp.asarray(raw), (16, 20))
  assert list(np.asarray(flags)) == [0, 0, 2]
  np.testing.assert_array_equal(heat[2], 0.0)
  for i in range(3):
    cam = np.maximum(raw[i], 0)
    cam = cam - cam.min()
    cam = cam / (1e-7 + cam.max())
    cam = _bilinear_reference(cam, 16, 20)
    cam = cam - cam.min()  # pytorch-grad-cam min-maxes again after the resize
    cam = cam / (1e-7 + cam.max())
    np.testing.assert_allclose(heat[i], cam, atol=1e-6)


def test_postprocess_flags_nonfinite_maps_and_never_returns_nan():
  raw = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
  raw[1, 0, 0] = np.nan
  heat, flags = cams.postprocess(jnp.asarray(raw), (8, 8))
  assert np.isfinite(np.asarray(heat)).all()
  assert list(np.asarray(flags)) == [0, 4 | 2]  # replaced by zeros: also constant
  np.testing.assert_array_equal(heat[1], 0.0)


def test_unknown_method_lists_choices():
  with pytest.raises(ValueError, match="unknown CAM method 'fullgrad'; choose one of: ablationcam"):
    cams.cam_function(models.create('resnet_tiny', image_size=32), 'fullgrad')
