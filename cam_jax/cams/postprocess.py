"""On-device postprocess of raw CAMs, in pytorch-grad-cam's order by default.

Per layer: ReLU, per-image min-max (``(x - min) / (1e-7 + max(x - min))``), bilinear resize to
the image size (half-pixel centres, edge-clamped, as OpenCV's ``INTER_LINEAR``). Then the
layers' maps (one or several) are averaged and min-maxed again at the image size, as
pytorch-grad-cam's ``aggregate_multi_layers`` does even for one layer: the resize moves the
extremes off 0 and 1. Degenerate maps are flagged per image and get a defined value, never NaN:
non-finite ones are replaced by zeros (``nonfinite``), and constant ones, all-zero after the
ReLU included, normalise to zeros (``constant``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from cam_jax.core.flags import FLAG_CONSTANT, FLAG_NONFINITE


def _min_max(cams):
  cams = cams - jnp.min(cams, axis=(1, 2), keepdims=True)
  return cams / (1e-7 + jnp.max(cams, axis=(1, 2), keepdims=True))


def postprocess(raw: jax.Array | Sequence[jax.Array], image_hw: tuple[int, int], *,
                relu: bool = True, normalise: bool = True) -> tuple[jax.Array, jax.Array]:
  """Raw maps (B, h, w), or a sequence of them (one per layer) -> (heat (B, H, W), flags (B,)).

  ``relu=False, normalise=False`` gives the raw maps resized to the image, unnormalised.
  """
  raws = [raw] if isinstance(raw, jax.Array) or not isinstance(raw, Sequence) else list(raw)
  parts = [_one_layer(r, image_hw, relu, normalise) for r in raws]
  heat = jnp.mean(jnp.stack([h for h, _ in parts]), axis=0)
  flags = jnp.bitwise_or.reduce(jnp.stack([f for _, f in parts]), axis=0)
  return (_min_max(heat) if normalise else heat), flags


def _one_layer(raw, image_hw, relu, normalise):
  raw = raw.astype(jnp.float32)  # a bfloat16 model's maps: normalised and scored in float32
  finite = jnp.all(jnp.isfinite(raw), axis=(1, 2))
  cams = jnp.where(finite[:, None, None], raw, 0.0)
  if relu:
    cams = jnp.maximum(cams, 0.0)
  constant = jnp.max(cams, axis=(1, 2)) == jnp.min(cams, axis=(1, 2))  # all zero after ReLU too
  if normalise:
    cams = _min_max(cams)
  heat = jax.image.resize(cams, (cams.shape[0], *image_hw), method='linear')
  flags = (jnp.where(finite, 0, FLAG_NONFINITE) | jnp.where(constant, FLAG_CONSTANT, 0))
  return heat, flags.astype(jnp.int32)
