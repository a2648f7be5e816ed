"""Per-image localisation metrics of a heat map against a lesion mask, in pure jnp.

``localisation_metrics(heat, mask)`` takes one heat map (float (H, W), expected in [0, 1], already
ReLU'd and min-max normalised; negative and NaN pixels count as 0) and one mask (bool (H, W)) and
returns a dict of jnp scalars (``iou_grid`` and ``dice_grid`` are (19,) vectors over
``THRESHOLDS``). It is jitted (``top_k`` static), ``jax.vmap``-able, and never returns NaN:
degenerate inputs get the defined values listed below.

Every rank-based metric (EHR quantiles, pointing game, relevance rank, top-k, ROC-AUC, PR-AUC,
the threshold grid, Otsu's histogram) reads ONE ascending sort per image. Its key packs the heat's
IEEE bit pattern (which orders like the value for non-negative floats) and the mask bit into one
uint32, ``bits * 2 + mask``: XLA's CPU sort is several times faster on one integer operand than on
floats or on several operands, and within a run of equal heat the outside-mask pixels come first.
Ties are exact: tie groups are found from the sorted bits with a running-max scan, and a rank cut
that falls inside a tie group scores the expected value over the orders of that group. The one
spatial step is CheXlocalize's contour fill of the Otsu binary (``fill_contours``), a flood fill
of the (H, W) background.

Degenerate cases: with an empty mask every metric of overlap with it is 0, except
``pixel_roc_auc`` (0.5, chance: ROC-AUC is undefined with one class); a full mask scores
``pixel_roc_auc`` 0.5 and ``pixel_pr_auc`` 1 (as sklearn's ``average_precision_score``). A map
with no pixel >= 0.1 has ``ehr_auc`` 0 and ``FLAG_NO_HEAT``; a constant map is a pointing-game
miss with ``FLAG_CONSTANT``, and its Otsu binarisation is empty.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cam_jax.core.errors import BadInput
from cam_jax.core.flags import FLAG_CONSTANT, FLAG_NO_HEAT

EHR_MIN_HEAT = 0.1
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, ..., 0.95
TOP_K_FRACTION = 0.02  # default k of the top-k intersection: 2 % of the pixels
MAX_PIXELS = 2 ** 23  # Otsu's histogram sums stay exact in int32 below this
_N_QUANTILES = 11  # EHR: q = 0, 0.1, ..., 1.0
_AT_HALF = THRESHOLDS.index(0.5)
_OTSU_TIE = 2.0 ** -40  # relative gap under which two Otsu variances count as a tie


def default_top_k(n_pixels: int) -> int:
  """k of the top-k intersection when none is given: round(0.02 * pixels), at least 1."""
  return max(1, round(TOP_K_FRACTION * n_pixels))


def checked_top_k(heat_shape, mask_shape, top_k: int | None) -> int:
  """The k of one image's metrics, after checking that heat and mask are one (H, W) image of at
  most ``MAX_PIXELS`` pixels and that ``top_k`` is None or an int in [1, H * W]."""
  if len(heat_shape) != 2 or tuple(mask_shape) != tuple(heat_shape):
    raise BadInput(f'heat and mask must both be (H, W); got {heat_shape} and {mask_shape}')
  n = heat_shape[0] * heat_shape[1]
  if n > MAX_PIXELS:
    raise BadInput(f'heat maps are limited to {MAX_PIXELS} pixels; got {heat_shape}')
  k = default_top_k(n) if top_k is None else top_k
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
    raise BadInput(f'top_k must be an int in [1, {n}] (the pixel count); got {top_k!r}')
  return int(k)


@functools.partial(jax.jit, static_argnames='top_k')
def localisation_metrics(heat, mask, *, top_k: int | None = None) -> dict:
  """Every localisation metric of one heat map against one mask (see the module docstring).

  Keys:
    ehr_auc: Effective Heat Ratio AUC (Qiu, Rivaz & Xiao, MLMI 2023): heat below 0.1 is zeroed;
      for q = 0, 0.1, ..., 1, t(q) = min(quantile_q(heat >= 0.1), 0.99 * max) and the ratio is the
      heat inside the mask at pixels >= t over the number of pixels >= t; trapezoid area over q.
    pointing_game: Zhang et al. (IJCV 2018, "Top-down neural attention by excitation backprop"):
      1 when the maximum lies in the mask; pixels tied at the maximum score the fraction of them in
      the mask; a constant map is a miss. Without Zhang et al.'s 15 px tolerance, so it is
      CheXlocalize's hit rate (eval.py: the mask at the map's argmax) but for ties, which
      CheXlocalize breaks by taking the first maximum in row-major order (a constant map hits
      when pixel (0, 0) is in the mask).
    pointing_game_weighted: pointing_game * (1 - mask area / image area), the size-weighted form.
    relevance_mass: heat inside the mask / total heat (Wang et al., CVPRW 2020, Score-CAM's
      energy-based pointing game; Arras, Osman & Samek, Information Fusion 2022, CLEVR-XAI's
      relevance mass accuracy); 0 when the total is 0.
    relevance_mass_weighted: relevance_mass * image area / mask area, the weighted attribution
      localisation mu_w = mu * S_tot / S_in of Kohlbrenner et al. (IJCNN 2020, "Towards best
      practice in explaining neural network decisions with LRP"); 1 is chance level.
    relevance_rank: Arras et al. (2022): with K = mask pixels, the fraction of the K highest-heat
      pixels inside the mask.
    top_k: top-k intersection (Theiner, Müller-Budack & Ewerth, "Interpretable semantic photo
      geolocation", WACV 2022): the fraction of the k highest-heat pixels inside the mask;
      k = ``top_k`` or ``default_top_k(H * W)``.
    iou, dice: IoU (Jaccard) and Dice of heat >= 0.5 against the mask (0 when both are empty).
    iou_grid, dice_grid: the same at every threshold of ``THRESHOLDS``, to tune one on validation
      data (Saporta et al., Nature Machine Intelligence 2022, CheXlocalize): ``tuned_threshold``.
      CheXlocalize's tuned binary is the plain ``map > t`` (no contour step, unlike its Otsu
      path), as here, but with a strict ``>``, on the grid 0.2, 0.3, ..., 0.7, and its tuning
      skips images whose binary is empty, where this grid has ``>=``, 19 thresholds and IoU 0.
    otsu_threshold, iou_otsu_plain, dice_otsu_plain: the map min-maxed to uint8
      (``uint8(255 * (h - min) / (max - min))``, truncated), Otsu's level L (Otsu, IEEE SMC 1979) as
      ``cv2.threshold(..., THRESH_OTSU)`` picks it (``otsu_level``), binary = uint8 > L;
      ``otsu_threshold`` is L / 255.
    iou_otsu, dice_otsu: CheXlocalize's Otsu segmentation (Saporta et al. 2022,
      heatmap_to_segmentation.py) as CheXlocalize computes it: that binary with its contours
      filled (``fill_contours``: holes filled, isolated one-pixel specks dropped).
    pixel_roc_auc: per-image ROC-AUC of heat as a score for mask pixels, ties counted 1/2
      (Mann-Whitney); 0.5 when the mask is empty or full.
    pixel_pr_auc: average precision of the same (sklearn's ``average_precision_score``: sum over
      distinct heat values of recall increase times precision; Arun et al., Radiology: AI 2021);
      0 for an empty mask, 1 for a full one.
    mask_fraction: mask area / image area.
    flags: int32 bit set of FLAG_NO_HEAT and FLAG_CONSTANT.
  """
  heat = jnp.asarray(heat, jnp.float32)
  mask = jnp.asarray(mask)
  k = checked_top_k(heat.shape, mask.shape, top_k)
  n = heat.size
  flat = jnp.ravel(heat)
  flat = jnp.where(flat > 0, flat, 0.0)  # also maps NaN and -0.0 to +0.0
  inside = jnp.ravel(mask).astype(bool)
  s = _sort(flat, inside)
  n_mask = s.cum_pos[-1]
  fraction = n_mask / n

  constant = s.bits[0] == s.bits[-1]
  pointing, rank, top = _top_fractions(s, jnp.stack([1, n_mask, k]))
  pointing = jnp.where(constant, 0.0, pointing)
  ehr, has_heat = _ehr_auc(s)
  iou_grid, dice_grid = _overlap(s, _positions(s, jnp.asarray(THRESHOLDS, jnp.float32)))
  level, otsu_start = _otsu(s)
  iou_plain, dice_plain = _overlap(s, otsu_start)
  plain = _uint8(flat, s.heat[0], s.heat[-1] - s.heat[0]).reshape(heat.shape) > level
  segmentation = fill_contours(plain)
  iou_otsu, dice_otsu = _iou_dice(jnp.sum(segmentation & mask.astype(bool)),
                                  jnp.sum(segmentation), n_mask)
  total = jnp.sum(flat)
  mass = s.inside_from[0] / jnp.where(total > 0, total, 1.0)  # no heat: 0 / 1
  roc, pr = _roc_pr(s)
  flags = jnp.where(has_heat, 0, FLAG_NO_HEAT) | jnp.where(constant, FLAG_CONSTANT, 0)
  return {
      'ehr_auc': ehr,
      'pointing_game': pointing,
      'pointing_game_weighted': pointing * (1 - fraction),
      'relevance_mass': mass,
      'relevance_mass_weighted': jnp.where(n_mask > 0, mass / jnp.maximum(fraction, 1 / n), 0.0),
      'relevance_rank': rank,
      'top_k': top,
      'iou': iou_grid[_AT_HALF],
      'dice': dice_grid[_AT_HALF],
      'iou_grid': iou_grid,
      'dice_grid': dice_grid,
      'otsu_threshold': level / 255,
      'iou_otsu': iou_otsu,
      'dice_otsu': dice_otsu,
      'iou_otsu_plain': iou_plain,
      'dice_otsu_plain': dice_plain,
      'pixel_roc_auc': roc,
      'pixel_pr_auc': pr,
      'mask_fraction': fraction,
      'flags': flags.astype(jnp.int32),
  }


class _Sorted:
  """One image sorted ascending by heat, outside-mask pixels first within ties.

  ``bits``: int32 heat bit patterns; ``heat``: the values; ``pos``: mask bits (int32);
  ``cum_pos``: positives among the first j elements, j = 0..N; ``start``: where each element's
  tie group starts; ``inside_from``: heat inside the mask from position j on, j = 0..N. The three
  come from one log-depth scan, which XLA's CPU runs several times faster than the
  ``reduce_window`` that ``jnp.cumsum`` and ``lax.cummax`` lower to.
  """

  def __init__(self, key):
    self.n = key.shape[0]
    self.bits = (key >> 1).astype(jnp.int32)
    self.heat = jax.lax.bitcast_convert_type(self.bits, jnp.float32)
    self.pos = (key & 1).astype(jnp.int32)
    idx = jnp.arange(self.n)
    is_start = jnp.concatenate([jnp.ones(1, bool), self.bits[1:] != self.bits[:-1]])
    cum_pos, self.start, inside = jax.lax.associative_scan(
        lambda a, b: (a[0] + b[0], jnp.maximum(a[1], b[1]), a[2] + b[2]),
        (self.pos, jnp.where(is_start, idx, 0), (self.heat * self.pos)[::-1]))
    self.cum_pos = jnp.concatenate([jnp.zeros(1, jnp.int32), cum_pos])
    self.inside_from = jnp.concatenate([inside[::-1], jnp.zeros(1, jnp.float32)])


def _sort(flat, inside):
  key = jax.lax.bitcast_convert_type(flat, jnp.uint32) * 2 + inside.astype(jnp.uint32)
  return _Sorted(jnp.sort(key))


def _count_at_most(s, key_at, targets):
  """For each target: the number of sorted positions j with ``key_at(j) <= target`` (``key_at``
  ascending in j), by bisection: log2(N) gathers per target, no pass over the image."""

  def halve(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) // 2
    right = key_at(jnp.minimum(mid, s.n - 1)) <= targets
    return jnp.where((lo < hi) & right, mid + 1, lo), jnp.where((lo < hi) & ~right, mid, hi)

  bounds = jnp.zeros(jnp.shape(targets), jnp.int32), jnp.full(jnp.shape(targets), s.n, jnp.int32)
  return jax.lax.fori_loop(0, s.n.bit_length(), halve, bounds)[0]


def _positions(s, values):
  """Number of sorted elements < each of ``values`` (>= 0): where ``heat >= value`` starts."""
  return _count_at_most(s, lambda j: s.bits[j], jax.lax.bitcast_convert_type(values, jnp.int32) - 1)


def _top_fractions(s, ks):
  """For each k in ``ks``: the expected fraction of the k highest-heat pixels inside the mask,
  over the orders of the tie group the cut falls in (0 for k = 0)."""
  cut = jnp.clip(s.n - ks, 0, s.n - 1)
  start = s.start[cut]
  end = _count_at_most(s, lambda j: s.bits[j], s.bits[cut])
  pos = s.cum_pos[-1]
  in_group = s.cum_pos[end] - s.cum_pos[start]
  hits = (pos - s.cum_pos[end]) + (end - cut) * in_group / (end - start)
  return jnp.where(ks > 0, hits / jnp.maximum(ks, 1), 0.0)


def _ehr_auc(s):
  """(EHR-AUC, whether any pixel is >= 0.1); the quantiles are np.quantile's 'linear' method,
  with the position q * (n - 1) computed exactly in integers."""
  first = _positions(s, jnp.float32(EHR_MIN_HEAT))
  n_eff = s.n - first
  last = jnp.maximum(n_eff - 1, 0)
  scaled = jnp.arange(_N_QUANTILES) * last
  lo = jnp.minimum(first + scaled // (_N_QUANTILES - 1), s.n - 1)
  hi = jnp.minimum(first + jnp.minimum(scaled // (_N_QUANTILES - 1) + 1, last), s.n - 1)
  frac = (scaled % (_N_QUANTILES - 1)) / (_N_QUANTILES - 1)
  quantiles = s.heat[lo] + frac * (s.heat[hi] - s.heat[lo])
  cut = jnp.maximum(jnp.minimum(quantiles, 0.99 * s.heat[-1]), jnp.float32(EHR_MIN_HEAT))
  start = _positions(s, cut)
  ratios = s.inside_from[start] / jnp.maximum(s.n - start, 1)
  area = (jnp.sum(ratios) - 0.5 * (ratios[0] + ratios[-1])) / (_N_QUANTILES - 1)
  has_heat = n_eff > 0
  return jnp.where(has_heat, area, 0.0), has_heat


def _overlap(s, start):
  """IoU and Dice of the pixels from sorted position ``start`` on (any shape) vs the mask."""
  pos = s.cum_pos[-1]
  return _iou_dice(pos - s.cum_pos[start], s.n - start, pos)


def _iou_dice(inter, pred, pos):
  """IoU and Dice from the pixel counts of intersection, prediction and mask (0 when both are
  empty)."""
  union = pred + pos - inter
  iou = jnp.where(union > 0, inter / jnp.maximum(union, 1), 0.0)
  dice = jnp.where(pred + pos > 0, 2 * inter / jnp.maximum(pred + pos, 1), 0.0)
  return iou, dice


def _roc_pr(s):
  """ROC-AUC (ties 1/2) and average precision of heat as a score for the mask pixels.

  Within a tie group the outside pixels sort first, so the mask pixel at sorted position i has
  ``neg_before`` = outside pixels before it, its whole group's included, and ``neg_start`` =
  outside pixels below its group: it beats the latter and ties the rest, scoring
  (neg_start + neg_before) / 2. Its precision at its own heat is the positives at or above its
  group over the pixels at or above it: (P - pos_start) / (N - start).
  """
  pos_start = s.cum_pos[s.start]
  neg_start = s.start - pos_start
  neg_before = jnp.arange(s.n) - s.cum_pos[:-1]
  pos = s.cum_pos[-1]
  neg = s.n - pos
  is_pos = s.pos > 0
  wins = jnp.where(is_pos, (neg_start + neg_before).astype(jnp.float32), 0.0)
  roc = jnp.sum(wins) / (2.0 * jnp.maximum(pos, 1) * jnp.maximum(neg, 1))
  precision = (pos - pos_start) / (s.n - s.start)
  pr = jnp.sum(jnp.where(is_pos, precision, 0.0)) / jnp.maximum(pos, 1)
  return jnp.where((pos > 0) & (neg > 0), roc, 0.5), pr


def _otsu(s):
  """(Otsu level, sorted position where uint8 > level starts) on CheXlocalize's uint8 map,
  ``uint8(255 * (h - min) / (max - min))``, which is ascending along the sort like the heat."""
  low, span = s.heat[0], s.heat[-1] - s.heat[0]
  at_most = _count_at_most(s, lambda j: _uint8(s.heat[j], low, span), jnp.arange(256))
  level = otsu_level(jnp.diff(at_most, prepend=0))
  return level, at_most[level]


def _uint8(heat, low, span):
  """CheXlocalize's uint8 map of ``heat`` (>= 0) with minimum ``low`` and range ``span``:
  ``uint8(255 * (h - low) / span)``, truncated, as int32; 0 where the map is constant."""
  scaled = jnp.floor(255 * ((heat - low) / jnp.where(span > 0, span, 1)))
  return jnp.where(span > 0, scaled, 0).astype(jnp.int32)


@jax.jit
def otsu_masks(heat):
  """(plain, segmentation): bool (H, W) binarisations of one heat map at its Otsu level, as
  ``localisation_metrics`` scores them: ``uint8 > L`` (``iou_otsu_plain``) and CheXlocalize's
  segmentation, its contours filled (``iou_otsu``; ``fill_contours``)."""
  heat = _image(jnp.asarray(heat, jnp.float32), 'heat')
  heat = jnp.where(heat > 0, heat, 0.0)
  low = jnp.min(heat)
  u8 = _uint8(heat, low, jnp.max(heat) - low)
  plain = u8 > otsu_level(jnp.bincount(jnp.ravel(u8), length=256))
  return plain, fill_contours(plain)


@jax.jit
def fill_contours(binary):
  """CheXlocalize's contour step on a bool (H, W) binary (Saporta et al. 2022,
  heatmap_to_segmentation.py): ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, every
  contour of more than one point drawn as a filled polygon with PIL.

  The union of those polygons is the binary with its holes filled, less its isolated pixels: the
  contours trace 8-connected foreground, so a hole is background not 4-connected to the image
  border (found by flood fill, ``_flood``), and a pixel with no foreground among its eight
  neighbours has a one-point contour, which CheXlocalize drops, unless it lies in a hole of
  another component (then that component's polygon covers it). Thin lines are kept (their
  contours have two points or more and are drawn as outlines).
  """
  binary = _image(jnp.asarray(binary, bool), 'binary')
  free = ~binary
  rows, cols = jnp.indices(binary.shape)
  edge = (rows == 0) | (rows == binary.shape[0] - 1) | (cols == 0) | (cols == binary.shape[1] - 1)
  outside = _flood(free, free & edge)
  padded = jnp.pad(binary, 1)
  height, width = binary.shape
  neighbours = sum(padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width].astype(jnp.int32)
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
  # An isolated pixel's eight neighbours are background and 4-connected around it, so the one
  # above it (the frame past the border counts as outside) says whether it lies outside.
  above = jnp.pad(outside, ((1, 0), (0, 0)), constant_values=True)[:-1]
  speck = binary & (neighbours == 0) & above
  return ~outside & ~speck


def _image(x, name):
  if x.ndim != 2:
    raise BadInput(f'{name} must be one (H, W) image; got shape {x.shape}')
  return x


def _flood(free, seed):
  """The ``free`` pixels 4-connected to ``seed`` (a subset of ``free``): each round spreads the
  reached set along whole runs of free pixels in every row, both ways, then every column, with a
  log-depth scan, until a round adds nothing (rounds: the turns of the longest path, plus 1)."""

  def along(reached, axis, reverse):
    # x_i = r_i | (f_i & x_(i-1)); (r, f) pairs compose associatively.
    step = lambda a, b: (b[0] | (b[1] & a[0]), a[1] & b[1])
    return jax.lax.associative_scan(step, (reached, free), reverse=reverse, axis=axis)[0]

  def round_(state):
    reached, _ = state
    new = reached
    for axis in (0, 1):
      new = along(along(new, axis, False), axis, True)
    return new, jnp.any(new != reached)

  return jax.lax.while_loop(lambda state: state[1], round_, (seed, jnp.bool_(True)))[0]


def otsu_level(counts):
  """Otsu's threshold level of a 256-bin histogram (Otsu, IEEE SMC 1979) as OpenCV picks it.

  OpenCV's ``THRESH_OTSU`` maximises the between-class variance of the split ``<= L`` / ``> L``
  over the levels with both classes non-empty, keeping the lowest level on ties (strict ``>``) and
  0 when no level splits (a constant image). Here the variance ``(N s1 - S n1)^2 / (n1 n2)`` is
  computed in double-float32 arithmetic (about 44 bits), and levels within 2^-40 of the best count
  as tied, so near-ties that float32 cannot order are resolved as cv2's doubles resolve them.
  """
  counts = jnp.asarray(counts, jnp.int32)
  n1 = jnp.cumsum(counts)
  s1 = jnp.cumsum(counts * jnp.arange(counts.shape[-1]))
  n, total = n1[-1], s1[-1]
  n2 = n - n1
  diff = _df_sub(_df_mul(_df(n), _df(s1)), _df_mul(_df(total), _df(n1)))
  sigma = _df_div(_df_mul(diff, diff), _df_mul(_df(n1), _df(n2)))
  valid = (n1 > 0) & (n2 > 0)
  hi = jnp.where(valid, sigma[0], -1.0)
  best_hi = jnp.max(hi)
  best_lo = jnp.max(jnp.where(hi == best_hi, sigma[1], -jnp.inf))
  gap = (best_hi - hi) + (best_lo - sigma[1])
  tied = valid & (gap <= _OTSU_TIE * best_hi)
  return jnp.where(jnp.any(valid), jnp.argmax(tied), 0).astype(jnp.int32)


# Double-float32 arithmetic (Dekker 1971): a value is an unevaluated sum (hi, lo), about 44 bits.
# The leading product is formed from halves cut with an integer mask (12 significant bits each):
# those partial products are exact, so the compiler's FMA contraction cannot change them (it
# broke Dekker's usual ``a * b - p`` error term under jit); only the low-order terms round.

def _df(x):
  """Exact (hi, lo) of int32 ``x`` (|x| < 2^31 - 2^7)."""
  hi = x.astype(jnp.float32)
  return hi, (x - hi.astype(jnp.int32)).astype(jnp.float32)


def _split(a):
  hi = jax.lax.bitcast_convert_type(
      jax.lax.bitcast_convert_type(a, jnp.uint32) & jnp.uint32(0xFFFFF000), jnp.float32)
  return hi, a - hi


def _two_sum(a, b):
  s = a + b
  v = s - a
  return s, (a - (s - v)) + (b - v)


def _df_mul(a, b):
  (ah, al), (bh, bl) = _split(a[0]), _split(b[0])
  cross, cross_err = _two_sum(ah * bl, al * bh)
  s, e = _two_sum(ah * bh, cross)
  return _two_sum(s, e + cross_err + al * bl + (a[0] * b[1] + a[1] * b[0]))


def _df_sub(a, b):
  s, e = _two_sum(a[0], -b[0])
  return _two_sum(s, e + (a[1] - b[1]))


def _df_div(a, b):
  """a / b for b > 0; 0 where b == 0."""
  safe = jnp.where(b[0] > 0, b[0], 1.0), jnp.where(b[0] > 0, b[1], 0.0)
  q1 = a[0] / safe[0]
  r = _df_sub(a, _df_mul((q1, jnp.zeros_like(q1)), safe))
  q2 = r[0] / safe[0]
  q = _two_sum(q1, q2)
  return jnp.where(b[0] > 0, q[0], 0.0), jnp.where(b[0] > 0, q[1], 0.0)


def box_mask(boxes, valid, hw: tuple[int, int]):
  """Bool (H, W) union of the valid boxes among (N, 4) ``boxes`` (x0, y0, x1, y1 in pixels).

  Boxes are half-open and clipped to the image: pixel (y, x) is inside when its centre
  (x + 0.5, y + 0.5) lies in [x0, x1) x [y0, y1), which for integer corners is exactly
  ``mask[y0:y1, x0:x1]``. Box ground truth (e.g. NIH ChestX-ray8) is scored through the same
  metrics as masks.
  """
  boxes = jnp.asarray(boxes, jnp.float32)
  valid = jnp.asarray(valid, bool)
  if boxes.ndim != 2 or boxes.shape[1] != 4 or valid.shape != boxes.shape[:1]:
    raise BadInput(f'boxes must be (N, 4) with valid (N,); got {boxes.shape} and {valid.shape}')
  height, width = hw
  ys = jnp.arange(height, dtype=jnp.float32) + 0.5
  xs = jnp.arange(width, dtype=jnp.float32) + 0.5
  in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])
  in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])
  return jnp.any(valid[:, None, None] & in_y[:, :, None] & in_x[:, None, :], axis=0)


def tuned_threshold(iou_grid: np.ndarray) -> float:
  """The threshold of ``THRESHOLDS`` with the highest mean IoU over images (rows of
  ``iou_grid``, (n_images, 19); NaN rows, images without a mask, are skipped), the lowest on
  ties: CheXlocalize's tuning on a validation split (Saporta et al. 2022)."""
  grid = np.asarray(iou_grid, np.float64)
  if grid.ndim != 2 or grid.shape[1] != len(THRESHOLDS):
    raise BadInput(f'iou_grid must be (n_images, {len(THRESHOLDS)}); got {grid.shape}')
  rows = grid[~np.isnan(grid).any(axis=1)]
  if not len(rows):
    raise BadInput('iou_grid has no image without NaN to tune the threshold on')
  return THRESHOLDS[int(np.argmax(rows.mean(axis=0)))]
