"""Similarity of two heat maps, in pure jnp: SSIM and Spearman rank correlation.

Each function takes two maps ``a``, ``b`` (float (H, W)) and returns a jnp scalar; both are
jit-able and ``jax.vmap``-able over image pairs and never return NaN for finite input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cam_jax.core.errors import BadInput

SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 11 taps at sigma 1.5, the window of Wang et al.


def _gaussian_taps(sigma: float) -> np.ndarray:
  radius = int(SSIM_TRUNCATE * sigma + 0.5)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  taps = np.exp(-0.5 * (x / sigma) ** 2)
  return (taps / taps.sum()).astype(np.float32)


def _smooth_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
  """Separable filter of the last two axes over the windows that lie inside the map."""
  n = len(taps)
  h, w = x.shape[-2:]
  x = sum(float(t) * x[..., k:h - n + 1 + k, :] for k, t in enumerate(taps))
  return sum(float(t) * x[..., :, k:w - n + 1 + k] for k, t in enumerate(taps))


def ssim(a: jax.Array, b: jax.Array, data_range: float = 1.0) -> jax.Array:
  """Mean structural similarity (Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment:
  from error visibility to structural similarity", IEEE TIP 2004).

  Gaussian-weighted local statistics (sigma 1.5, 11 taps, population covariances), K1 = 0.01,
  K2 = 0.03, averaged over the pixels whose whole window lies inside the map; this is
  ``skimage.metrics.structural_similarity(a, b, data_range=..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``. Two constant maps give the luminance term alone
  (1 when equal). Maps must be at least 11 x 11; the local index is clipped to [-1, 1], its
  exact range, against float32 rounding.
  """
  taps = _gaussian_taps(SSIM_SIGMA)
  if a.shape != b.shape or a.ndim != 2:
    raise BadInput(f'ssim takes two maps of one shape (H, W), got {a.shape} and {b.shape}')
  if min(a.shape) < len(taps):
    raise BadInput(f'ssim needs maps of at least {len(taps)} x {len(taps)} pixels, got '
                   f'{a.shape}')
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  # Local second moments about each map's global mean: the same variances with less
  # float32 cancellation than raw moments.
  ca, cb = jnp.mean(a), jnp.mean(b)
  da, db = a - ca, b - cb
  mda, mdb, saa, sbb, sab = _smooth_valid(jnp.stack([da, db, da * da, db * db, da * db]), taps)
  va, vb, vab = saa - mda * mda, sbb - mdb * mdb, sab - mda * mdb
  ma, mb = mda + ca, mdb + cb
  c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
  s = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
  return jnp.mean(jnp.clip(s, -1.0, 1.0))  # |s| <= 1 exactly; float32 rounding can overstep


def _centred_ranks(x: jax.Array) -> jax.Array:
  """2 * (average rank - mean rank) of every value of ``x``, as exact integers."""
  x = x.reshape(-1)
  s = jnp.sort(x)
  below = jnp.searchsorted(s, x, side='left')
  upto = jnp.searchsorted(s, x, side='right')
  # Ties share the mean of ranks below+1 .. upto, (below + upto + 1) / 2; the mean rank is
  # (n + 1) / 2.
  return below + upto - x.size


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
  """Spearman rank correlation of the pixels of two maps (Spearman, "The proof and measurement
  of association between two things", Am. J. Psychol. 1904): Pearson correlation of their
  ranks, ties given their average rank (``scipy.stats.spearmanr``). 0 when either map is
  constant (scipy gives NaN): a constant map ranks nothing.
  """
  if a.shape != b.shape:
    raise BadInput(f'spearman takes two maps of one shape, got {a.shape} and {b.shape}')
  n = a.size
  ra = _centred_ranks(a).astype(jnp.float32) / n
  rb = _centred_ranks(b).astype(jnp.float32) / n
  den = jnp.sqrt(jnp.sum(ra * ra) * jnp.sum(rb * rb))
  # A constant map's centred ranks are all 0, so the numerator is 0 when ``den`` is.
  rho = jnp.sum(ra * rb) / jnp.where(den > 0, den, 1.0)
  return jnp.clip(rho, -1.0, 1.0)
