"""On-device postprocess of raw CAMs, in pytorch-grad-cam's order by default.

ReLU, per-image min-max (``(x - min) / (1e-7 + max(x - min))``), then bilinear resize to the
image size (half-pixel centres, edge-clamped, as OpenCV's ``INTER_LINEAR``). Several layers'
maps are each postprocessed, averaged and min-maxed again (pytorch-grad-cam's
``aggregate_multi_layers``). Non-finite maps are replaced by zeros and flagged, never passed on
as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from cam_jax.scoring.localisation import FLAG_NONFINITE


def _min_max(cams):
  cams = cams - jnp.min(cams, axis=(1, 2), keepdims=True)
  return cams / (1e-7 + jnp.max(cams, axis=(1, 2), keepdims=True))


def postprocess(raw: jax.Array | Sequence[jax.Array], image_hw: tuple[int, int], *,
                relu: bool = True, normalise: bool = True) -> tuple[jax.Array, jax.Array]:
  """Raw maps (B, h, w), or a sequence of them (one per layer) -> (heat (B, H, W), flags (B,))."""
  if not isinstance(raw, jax.Array) and isinstance(raw, Sequence):
    parts = [postprocess(r, image_hw, relu=relu, normalise=normalise) for r in raw]
    heat = jnp.mean(jnp.stack([h for h, _ in parts]), axis=0)
    flags = jnp.bitwise_or.reduce(jnp.stack([f for _, f in parts]), axis=0)
    return (_min_max(heat) if normalise else heat), flags
  finite = jnp.all(jnp.isfinite(raw), axis=(1, 2))
  cams = jnp.where(finite[:, None, None], raw, 0.0)
  if relu:
    cams = jnp.maximum(cams, 0.0)
  if normalise:
    cams = _min_max(cams)
  heat = jax.image.resize(cams, (cams.shape[0], *image_hw), method='linear')
  flags = jnp.where(finite, 0, FLAG_NONFINITE).astype(jnp.int32)
  return heat, flags
