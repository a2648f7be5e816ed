"""On-device postprocess of raw CAMs, in pytorch-grad-cam's order by default.

ReLU, per-image min-max (``(x - min) / (1e-7 + max(x - min))``), then bilinear resize to the
image size (half-pixel centres, edge-clamped, as OpenCV's ``INTER_LINEAR``). Non-finite maps are
replaced by zeros and flagged, never passed on as NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cam_jax.scoring.localisation import FLAG_NONFINITE


def postprocess(raw: jax.Array, image_hw: tuple[int, int], *, relu: bool = True,
                normalise: bool = True) -> tuple[jax.Array, jax.Array]:
  """Raw maps (B, h, w) -> (heat maps (B, H, W), flags (B,) int32)."""
  finite = jnp.all(jnp.isfinite(raw), axis=(1, 2))
  cams = jnp.where(finite[:, None, None], raw, 0.0)
  if relu:
    cams = jnp.maximum(cams, 0.0)
  if normalise:
    cams = cams - jnp.min(cams, axis=(1, 2), keepdims=True)
    cams = cams / (1e-7 + jnp.max(cams, axis=(1, 2), keepdims=True))
  heat = jax.image.resize(cams, (cams.shape[0], *image_hw), method='linear')
  flags = jnp.where(finite, 0, FLAG_NONFINITE).astype(jnp.int32)
  return heat, flags
