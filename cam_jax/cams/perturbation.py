"""CAMs weighted by extra forward passes, batched on device in chunks of channels."""

import jax
import jax.numpy as jnp

ABLATION_OFFSET = 1e7


def resize_align_corners(x, out_hw):
  """Bilinear resize of (h, w, C) with corner pixels aligned (torch ``UpsamplingBilinear2d``)."""
  def weights(n_in, n_out):
    pos = jnp.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
    lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, n_in - 1)
    hi = jnp.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    return (jax.nn.one_hot(lo, n_in) * (1 - frac)[:, None] + jax.nn.one_hot(hi, n_in) *
            frac[:, None])
  wy, wx = weights(x.shape[0], out_hw[0]), weights(x.shape[1], out_hw[1])
  return jnp.einsum('Hh,hwc,Ww->HWc', wy, x, wx)


def score_cam(probe, layer, native, act):
  """Score-CAM (Wang et al., CVPRW 2020): each channel, upsampled and min-max normalised, masks
  the input; the softmax of the masked inputs' target scores weights the channels."""
  del layer, native
  masks = resize_align_corners(act, probe.image.shape[1:3])
  lo, hi = jnp.min(masks, axis=(0, 1)), jnp.max(masks, axis=(0, 1))
  masks = (masks - lo) / (hi - lo + 1e-8)
  scores = probe.score_inputs(lambda k: probe.image[0] * masks[..., k, None], act.shape[-1])
  return act * jax.nn.softmax(scores)


def ablation_cam(probe, layer, native, act):
  """Ablation-CAM (Desai & Ramaswamy, WACV 2020): weight = relative drop of the target score
  when the channel is ablated (set to 0, or to min - 1e7 where activations can be negative).

  pytorch-grad-cam re-reads the minimum after each ablated row, so its i-th row in a batch gets
  min - (i+1) * 1e7; here every channel gets the same value. Both agree where the minimum is 0
  (post-ReLU layers)."""
  value = jnp.where(jnp.min(native) == 0, 0.0, jnp.min(native) - ABLATION_OFFSET)
  channel = jnp.arange(native.shape[-1])
  ablated = probe.score_activations(
      layer, native, lambda k: jnp.where(channel == k, value, native), native.shape[-1])
  original = probe.original_score()
  return act * ((original - ablated) / original)
