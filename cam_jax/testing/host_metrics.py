"""The localisation metrics of ``localisation.localisation_metrics``, on the host, per image.

Same keys, same definitions and degenerate values, computed the way the reference libraries do:
NumPy/SciPy on one image at a time, ``np.quantile`` for the EHR thresholds, a descending sort for
the rank cuts, the host classification metrics for ROC-AUC (Mann-Whitney) and sklearn's
tie-grouped precision-recall curve for average precision, a loop over thresholds for IoU/Dice,
Otsu's level from ``np.bincount`` in float64, as OpenCV computes it, and CheXlocalize's contour
fill from ``scipy.ndimage`` (hole filling and 8-connected component sizes). It is the host-side
alternative that benchmarks set beside the fused device pass, and a second implementation for the
tests.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cam_jax.core.flags import FLAG_CONSTANT, FLAG_NO_HEAT
from cam_jax.metrics import classification
from cam_jax.metrics.localisation import EHR_MIN_HEAT, THRESHOLDS, checked_top_k


def localisation_metrics_numpy(heat: np.ndarray, mask: np.ndarray, top_k: int | None = None
                               ) -> dict:
  """Every metric of ``localisation.localisation_metrics`` for one (H, W) heat map and mask, as
  Python floats (``iou_grid``, ``dice_grid``: float64 arrays; ``flags``: int)."""
  heat = np.asarray(heat, np.float32)
  k = checked_top_k(heat.shape, np.shape(mask), top_k)
  h, m = _flat(heat, mask)
  n, n_mask = h.size, int(m.sum())

  constant = h.max() == h.min()
  ehr, has_heat = _ehr_auc(h, m)
  pointing = 0.0 if constant else _top_fraction(h, m, 1)
  total = h.sum(dtype=np.float64)
  mass = float(h[m].sum(dtype=np.float64) / total) if total > 0 else 0.0
  grid = np.array([_iou_dice(h >= t, m) for t in THRESHOLDS])
  u8 = _uint8(h)
  level = _otsu_level(u8)
  plain = u8 > level
  iou_plain, dice_plain = _iou_dice(plain, m)
  iou_otsu, dice_otsu = _iou_dice(chexlocalize_fill(plain.reshape(heat.shape)).ravel(), m)
  roc, pr = _roc_auc(h, m), _average_precision(h, m)
  half = THRESHOLDS.index(0.5)
  return {
      'ehr_auc': ehr,
      'pointing_game': pointing,
      'pointing_game_weighted': pointing * (1 - n_mask / n),
      'relevance_mass': mass,
      'relevance_mass_weighted': mass * n / n_mask if n_mask else 0.0,
      'relevance_rank': _top_fraction(h, m, n_mask),
      'top_k': _top_fraction(h, m, k),
      'iou': grid[half, 0],
      'dice': grid[half, 1],
      'iou_grid': grid[:, 0],
      'dice_grid': grid[:, 1],
      'otsu_threshold': level / 255,
      'iou_otsu': iou_otsu,
      'dice_otsu': dice_otsu,
      'iou_otsu_plain': iou_plain,
      'dice_otsu_plain': dice_plain,
      'pixel_roc_auc': roc,
      'pixel_pr_auc': pr,
      'mask_fraction': n_mask / n,
      'flags': (0 if has_heat else FLAG_NO_HEAT) | (FLAG_CONSTANT if constant else 0),
  }


def ehr_auc(heat: np.ndarray, mask: np.ndarray) -> float:
  """The ``ehr_auc`` of ``localisation_metrics_numpy`` alone, for one (H, W) heat map and mask:
  EHR-AUC as a user writes it in NumPy beside Quantus (the peer pipeline of ``cam_jax.bench``)."""
  return _ehr_auc(*_flat(heat, mask))[0]


def _flat(heat, mask):
  """Flat float32 heat with negative (and NaN) pixels as 0, and the flat bool mask."""
  heat = np.asarray(heat, np.float32)
  return np.where(heat > 0, heat, np.float32(0)).ravel(), np.asarray(mask).astype(bool).ravel()


def _ehr_auc(h, m):
  effective = h[h >= np.float32(EHR_MIN_HEAT)]
  if not effective.size:
    return 0.0, False
  zeroed = np.where(h >= np.float32(EHR_MIN_HEAT), h, np.float32(0))
  ratios = []
  for k in range(11):  # q = k / 10: unlike np.linspace's 0.6000000000000001, q * (n - 1) never
    # rounds above an integer position here, which would lift t over the pixel it should equal
    t = min(np.quantile(effective, k / 10), np.float32(0.99) * zeroed.max())
    above = zeroed >= t
    ratios.append(zeroed[above & m].sum(dtype=np.float64) / above.sum())
  return float(np.trapezoid(ratios, dx=0.1)), True


def _top_fraction(h, m, k):
  """Expected fraction of the k highest pixels inside the mask, ties at the cut shared."""
  if k == 0:
    return 0.0
  cut = np.sort(h)[::-1][k - 1]
  above, tied = h > cut, h == cut
  hits = (above & m).sum() + (k - above.sum()) * (tied & m).sum() / tied.sum()
  return float(hits / k)


def _iou_dice(pred, m):
  inter, union, total = (pred & m).sum(), (pred | m).sum(), pred.sum() + m.sum()
  return (inter / union if union else 0.0), (2 * inter / total if total else 0.0)


def chexlocalize_fill(binary: np.ndarray) -> np.ndarray:
  """CheXlocalize's filled contours of a bool (H, W) binary (``localisation.fill_contours``):
  holes (background not 4-connected to the border) filled, then the one-pixel 8-connected
  components outside every hole dropped."""
  filled = ndimage.binary_fill_holes(binary)
  labels, _ = ndimage.label(binary, structure=np.ones((3, 3)))
  sizes = np.bincount(labels.ravel())
  single = binary & (sizes[labels] == 1)
  outside = np.pad(~filled, 1, constant_values=True)
  in_hole = ~outside[:-2, 1:-1]  # an isolated pixel's neighbours: in a hole or all outside
  return filled & ~(single & ~in_hole)


def _uint8(h):
  """CheXlocalize's map: min-max to [0, 255] in float32, truncated to uint8 (0 if constant)."""
  shifted = h - h.min()
  if shifted.max() == 0:
    return np.zeros(h.shape, np.uint8)
  return (255 * (shifted / shifted.max())).astype(np.uint8)


def _otsu_level(u8):
  """OpenCV's THRESH_OTSU level: the first maximum of the between-class variance, in float64."""
  counts = np.bincount(u8, minlength=256).astype(np.float64)
  n1, s1 = np.cumsum(counts), np.cumsum(counts * np.arange(256))
  n, total = n1[-1], s1[-1]
  valid = (n1 > 0) & (n1 < n)
  if not valid.any():
    return 0
  with np.errstate(divide='ignore', invalid='ignore'):
    sigma = (n * s1 - total * n1) ** 2 / (n1 * (n - n1))
  return int(np.argmax(np.where(valid, sigma, -1.0)))


def _roc_auc(h, m):
  """Pixel ROC-AUC (``classification.roc_auc``, Mann-Whitney with ties 1/2); 0.5 with one class."""
  return classification.roc_auc(m, h) if 0 < m.sum() < m.size else 0.5


def _average_precision(h, m):
  """Pixel average precision (``classification.pr_auc``, sklearn's definition); 0 with no
  lesion pixel."""
  return classification.pr_auc(m, h) if m.any() else 0.0
