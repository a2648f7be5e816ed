"""Does a CAM metric change with depth within a network family? Statistics for a study that trains,
per family, models at several depths with several seeds each and scores all of them on the same
test images (the question of Qiu, Rivaz & Xiao, "Is visual explanation with Grad-CAM more
reliable for deeper neural networks?", MLMI 2023).

Two levels vary: images (shared by every model: the design is paired) and seeds (training runs,
nested in a (family, depth)).  Every interval is a hierarchical percentile bootstrap that
resamples both (Saravanan, Berman & Sober, "Application of the hierarchical bootstrap to
multi-level data in neuroscience", Neurons, Behavior, Data analysis and Theory 2020): one draw of
images with replacement shared by every model, then, within each (family, depth), its seeds with
replacement.  The unit of a depth effect is the model, not the image, so the trend test works on
model-level values; per-image tests answer the narrower question of whether two given sets of
models differ on these images.

Input: one records DataFrame, a row per (model, image), with columns model, family, depth (weight
layers), seed, id, label, prob, has_mask, mask_fraction (for ``chance_level``) and metric columns
(NaN where undefined).  ``metric`` is a column, 'accuracy' ((prob >= 0.5) == label, per image) or
'roc_auc' (a model-level value, over every image).  Usage::

  from cam_jax.analysis import depth
  values = depth.hierarchical_bootstrap(records, 'ehr_auc')           # per (family, depth)
  trend = depth.depth_trend(records, 'ehr_auc')                       # per family
  pairs = depth.depth_pairs(records, 'pointing_game', binary=True)    # per family, depth pair
  across = depth.family_pairs(records, 'ehr_auc', binary=False)       # per depth rank
  chance = depth.beats_chance(records, 'pointing_game')               # per (family, depth)
  trend, pairs, across, chance = depth.holm_all([trend, pairs, across, chance])
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sp_stats

from cam_jax.analysis import statistics
from cam_jax.core.errors import BadInput
from cam_jax.metrics.classification import roc_auc

REQUIRED_COLUMNS = ('model', 'family', 'depth', 'seed', 'id', 'label', 'prob', 'has_mask')
MODEL_COLUMNS = ('family', 'depth', 'seed')
DERIVED_METRICS = ('accuracy', 'roc_auc')
TREND_TESTS = ('slope_t', 'permutation')
MAX_ASSIGNMENTS = 1_000_000  # the exact permutation test enumerates at most this many

# Per-image chance levels: metric -> fn(mask fraction f) for an uninformative heat map.
# pointing game: a uniformly random maximum lands in the mask with probability f; its size-
#   weighted form scores f (1 - f).
# relevance mass: a constant map (or any exchangeable random map, by symmetry) puts a share f of
#   its heat in the mask; the weighted form mass / f is then 1.
# relevance rank, top-k: the k highest pixels of an exchangeable random map are a uniformly random
#   k-subset, a share f of which is expected inside the mask.
# pixel PR-AUC: the average precision of a constant map is the prevalence f (and the large-image
#   limit for random scores); pixel ROC-AUC and classification ROC-AUC: 0.5.
# EHR-AUC, IoU, Dice (fixed or Otsu threshold) and faithfulness metrics depend on the map's
#   distribution and have none.
_CHANCE = {
    'pointing_game': lambda f: f,
    'pointing_game_weighted': lambda f: f * (1 - f),
    'relevance_mass': lambda f: f,
    'relevance_mass_weighted': lambda f: np.ones_like(f),
    'relevance_rank': lambda f: f,
    'top_k': lambda f: f,
    'pixel_pr_auc': lambda f: f,
    'pixel_roc_auc': lambda f: np.full_like(f, 0.5),
}

BOOTSTRAP_COLUMNS = ['family', 'depth', 'metric', 'value', 'low', 'high', 'n_seeds', 'n_images',
                     'n_skipped']
TREND_COLUMNS = ['family', 'metric', 'slope', 'low', 'high', 'rho', 't', 'df', 'p', 'n_models',
                 'n_depths', 'test', 'note']
PAIR_COLUMNS = ['family', 'metric', 'deeper', 'shallower', 'difference', 'low', 'high', 'test',
                'statistic', 'p', 'n', 'n_skipped', 'note']
FAMILY_PAIR_COLUMNS = ['metric', 'depth_index', 'family_a', 'depth_a', 'family_b', 'depth_b',
                       'difference', 'low', 'high', 'test', 'statistic', 'p', 'n', 'n_skipped',
                       'note']
CHANCE_COLUMNS = ['family', 'depth', 'metric', 'excess', 'low', 'high', 'test', 'statistic', 'p',
                  'n_seeds', 'n_images', 'note']


@dataclasses.dataclass(frozen=True)
class _Design:
  """One metric's per-image values as a (models, images) matrix, models sorted by family, depth,
  seed; ``groups`` maps (family, depth) to its models' row indices, in that order."""

  metric: str
  models: list[str]
  groups: dict[tuple[str, int], np.ndarray]
  labels: np.ndarray  # (N,) bool
  values: np.ndarray  # (M, N) float: the metric, or prob for roc_auc

  @property
  def model_level(self) -> bool:
    return self.metric == 'roc_auc'

  def families(self) -> dict[str, list[int]]:
    """family -> its depths, ascending."""
    out: dict[str, list[int]] = {}
    for family, depth in self.groups:
      out.setdefault(family, []).append(depth)
    return out


def _check_records(records: pd.DataFrame, metric: str) -> None:
  needed = list(REQUIRED_COLUMNS) + ([] if metric in DERIVED_METRICS else [metric])
  missing = [c for c in needed if c not in records.columns]
  if missing:
    raise BadInput(f'records lack columns {missing}')
  if records.empty:
    raise BadInput('records are empty')
  depths = pd.to_numeric(records['depth'], errors='coerce')
  if not (depths.notna() & (depths == depths.round())).all():
    bad = records.loc[~(depths.notna() & (depths == depths.round())), 'model'].iloc[0]
    raise BadInput(f'model {bad!r}: column \'depth\' must be an integer (weight layers)')
  varying = records.groupby('model')[list(MODEL_COLUMNS)].nunique()
  for column in MODEL_COLUMNS:
    bad = varying.index[varying[column] > 1]
    if len(bad):
      raise BadInput(f'model {bad[0]!r} has more than one {column!r}')
  repeated = records.loc[records.duplicated(['model', 'id']), 'model']
  if len(repeated):
    raise BadInput(f'model {repeated.iloc[0]!r} repeats image ids (one row per model and image; '
                   'filter one CAM method first)')
  meta = records.drop_duplicates('model').set_index('model')[list(MODEL_COLUMNS)]
  twins = meta.index[meta.duplicated(keep=False)]
  if len(twins):
    raise BadInput(f'models {list(twins)} share one (family, depth, seed)')


def _design(records: pd.DataFrame, metric: str, minus: np.ndarray | None = None) -> _Design:
  """The checked design of ``metric``, less ``minus`` (per records row) for a per-image one."""
  _check_records(records, metric)
  frame = records.assign(id=records['id'].astype(str), _minus=0.0 if minus is None else minus)
  meta = frame.drop_duplicates('model').set_index('model')[list(MODEL_COLUMNS)]
  meta = meta.sort_values(list(MODEL_COLUMNS), kind='stable')
  models = list(meta.index)
  ids = pd.Index(frame.loc[frame['model'] == models[0], 'id'])
  for model, group in frame.groupby('model', sort=False):
    unmatched = ids.symmetric_difference(pd.Index(group['id']))
    if len(unmatched):
      raise BadInput(f'records of model {models[0]!r} and {model!r} cover different images: '
                     f'{len(unmatched)} ids are in only one of them (e.g. {unmatched[0]!r})')

  def matrix(column):
    return frame.pivot(index='model', columns='id', values=column).loc[models, ids]

  labels = matrix('label')
  if not labels.isin((0, 1)).all().all():
    raise BadInput('column \'label\' must be 0 or 1')
  differ = labels.nunique(axis=0) > 1
  if differ.any():
    raise BadInput(f'image {differ.index[differ][0]!r} has different labels across models')
  probs = matrix('prob').to_numpy(dtype=np.float64)
  if metric in DERIVED_METRICS and not np.isfinite(probs).all():
    bad = models[int(np.nonzero(~np.isfinite(probs).all(axis=1))[0][0])]
    raise BadInput(f'model {bad!r}: column \'prob\' must be finite on every image for {metric}')
  labels = labels.iloc[0].to_numpy().astype(bool)
  if metric == 'roc_auc':
    if labels.all() or not labels.any():
      raise BadInput(f'roc_auc needs both labels; every image has label {int(labels[0])}')
    grid = probs
  elif metric == 'accuracy':
    grid = ((probs >= 0.5) == labels).astype(np.float64)
  else:
    try:
      grid = matrix(metric).to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
      raise BadInput(f'metric column {metric!r} is not numeric: {e}') from None
    if np.isinf(grid).any():
      raise BadInput(f'metric column {metric!r} has infinite values (NaN marks undefined ones)')
  if metric != 'roc_auc':
    grid = grid - matrix('_minus').to_numpy(dtype=np.float64)
  groups: dict[tuple[str, int], list[int]] = {}
  for i, (family, depth) in enumerate(zip(meta['family'], meta['depth'])):
    groups.setdefault((str(family), int(depth)), []).append(i)
  groups = {key: np.asarray(rows, dtype=np.intp) for key, rows in sorted(groups.items())}
  return _Design(metric, models, groups, labels, grid)


def _model_points(d: _Design, values: np.ndarray) -> np.ndarray:
  """(k,) model-level values of the rows ``values``: mean over defined images, or ROC-AUC."""
  if d.model_level:
    return np.array([roc_auc(d.labels, v) for v in values])
  defined = ~np.isnan(values)
  counts = defined.sum(axis=1)
  sums = np.where(defined, values, 0.0).sum(axis=1)
  return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _resampled_auc(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """(R,) ROC-AUC of each resample, ``counts`` (R, N) how often each image was drawn: the
  Mann-Whitney statistic with every image counted as often as drawn, ties 1/2 (Hanley & McNeil,
  Radiology 1982), i.e. ``roc_auc(labels[idx], scores[idx])`` in O(R N); NaN where a class is
  not drawn."""
  order = np.argsort(scores, kind='stable')
  ranked = scores[order]
  starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # tie groups, ascending
  drawn = counts[:, order]
  pos = np.where(labels[order], drawn, 0.0)
  pos_tied = np.add.reduceat(pos, starts, axis=1)
  neg_tied = np.add.reduceat(drawn - pos, starts, axis=1)
  neg_below = np.cumsum(neg_tied, axis=1) - neg_tied
  pairs = pos_tied.sum(axis=1) * neg_tied.sum(axis=1)
  wins = (pos_tied * (neg_below + 0.5 * neg_tied)).sum(axis=1)
  return np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)


def _model_resamples(d: _Design, values: np.ndarray, images: np.ndarray) -> np.ndarray:
  """(R, k) model-level values on each row of ``images`` (R, N), NaN where undefined (no
  defined image drawn; one class only for ROC-AUC)."""
  out = np.full((len(images), len(values)), np.nan)
  defined = ~np.isnan(values)
  filled = np.where(defined, values, 0.0)
  n = values.shape[1]
  for start in range(0, len(images), 256):
    chunk = slice(start, start + 256)
    counts = np.stack([np.bincount(row, minlength=n) for row in images[chunk]]).astype(np.float64)
    if d.model_level:
      out[chunk] = np.stack([_resampled_auc(d.labels, v, counts) for v in values], axis=1)
      continue
    sums, drawn = counts @ filled.T, counts @ defined.T
    out[chunk] = np.where(drawn > 0, sums / np.maximum(drawn, 1), np.nan)
  return out


@dataclasses.dataclass(frozen=True)
class _Resampling:
  """The shared draws: ``images`` (R, N) once for every model, and per (family, depth) its
  seeds (R, k), positions within the group, from a generator keyed by (seed, group position)."""

  images: np.ndarray
  seeds: dict[tuple[str, int], np.ndarray]
  confidence: float


def _resampling(d: _Design, n_resamples: int, seed: int, confidence: float) -> _Resampling:
  if not 0 < confidence < 1:
    raise BadInput(f'confidence must be in (0, 1), got {confidence}')
  if n_resamples < 1:
    raise BadInput(f'n_resamples must be >= 1, got {n_resamples}')
  images = statistics.resample_indices(d.values.shape[1], n_resamples, seed)
  seeds = {key: np.random.default_rng([seed, i]).integers(0, len(rows), (n_resamples, len(rows)))
           for i, (key, rows) in enumerate(d.groups.items())}
  return _Resampling(images, seeds, confidence)


def _group(d: _Design, rs: _Resampling, key, keep: np.ndarray | None = None):
  """(points (k,), resampled (R, k)) of the group's models, images outside ``keep`` dropped:
  resampled[r] are the model values of the seeds drawn in resample r, on its images."""
  values = d.values[d.groups[key]]
  if keep is not None and not d.model_level:
    values = np.where(keep, values, np.nan)
  boot = _model_resamples(d, values, rs.images)
  return _model_points(d, values), np.take_along_axis(boot, rs.seeds[key], axis=1)


def _interval(boot: np.ndarray, confidence: float) -> tuple[float, float, int]:
  """(low, high, n_skipped) over the defined resamples; NaN bounds when none is."""
  defined = boot[~np.isnan(boot)]
  if not defined.size:
    return math.nan, math.nan, int(boot.size)
  return (*statistics.percentile_interval(defined, confidence), int(boot.size - defined.size))


def _n_images(d: _Design, rows, keep=None) -> int:
  if d.model_level:
    return int(d.labels.size)
  defined = ~np.isnan(d.values[rows]).any(axis=0)
  return int((defined if keep is None else defined & keep).sum())


def hierarchical_bootstrap(records: pd.DataFrame, metric: str, *, n_resamples: int = 2000,
                           seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
  """Per (family, depth): value = mean over its seeds of each model's value (mean over the
  images where the metric is defined; ROC-AUC or accuracy over every image), with a hierarchical
  percentile bootstrap CI (Saravanan et al. 2020): each resample draws images with replacement
  once, shared by every model, and each (family, depth)'s seeds with replacement, then
  recomputes the value; the interval thus reflects image and seed variance.  With one seed per
  depth it is the paired image bootstrap of ``statistics.paired_bootstrap`` (same draws).

  Columns family, depth, metric, value, low, high, n_seeds, n_images (defined in every seed),
  n_skipped (resamples where the value is undefined, left out of the interval).
  """
  d = _design(records, metric)
  rs = _resampling(d, n_resamples, seed, confidence)
  rows = []
  for key, members in d.groups.items():
    points, boot = _group(d, rs, key)
    rows.append((*key, metric, float(points.mean()), *_interval(boot.mean(axis=1), confidence),
                 len(members), _n_images(d, members)))
  table = pd.DataFrame(rows, columns=BOOTSTRAP_COLUMNS[:4] + ['low', 'high', 'n_skipped',
                                                               'n_seeds', 'n_images'])
  return table[BOOTSTRAP_COLUMNS]


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """OLS slope of each row of y (..., n) on x (..., n)."""
  xc = x - x.mean(axis=-1, keepdims=True)
  yc = y - y.mean(axis=-1, keepdims=True)
  return (xc * yc).sum(axis=-1) / (xc * xc).sum(axis=-1)


def _slope_t(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
  """(t, p, df) of the OLS slope: t = b / se(b), se^2 = SSE / (n - 2) / Sxx, p two-sided on
  n - 2 df; a perfect fit gives t = +-inf, p = 0 (t = 0, p = 1 with a zero slope)."""
  df = x.size - 2
  xc = x - x.mean()
  b = float(_slopes(x, y))
  sse = float(((y - y.mean() - b * xc) ** 2).sum())
  se = math.sqrt(sse / df / float((xc * xc).sum()))
  if se == 0:
    return (0.0, 1.0, df) if b == 0 else (math.copysign(math.inf, b), 0.0, df)
  t = b / se
  return t, float(2 * sp_stats.t.sf(abs(t), df)), df


def _arrangements(labels: np.ndarray) -> np.ndarray:
  """(K, n) every distinct ordering of the multiset ``labels``, K = n! / prod(count!)."""
  values, counts = np.unique(labels, return_counts=True)
  n_arrangements = math.factorial(labels.size) // math.prod(math.factorial(c) for c in counts)
  if n_arrangements > MAX_ASSIGNMENTS:
    raise BadInput(f'the exact permutation test would enumerate {n_arrangements} assignments '
                   f'(over {MAX_ASSIGNMENTS}); use test=\'slope_t\'')
  out = []

  def place(assignment, free, level):
    if level == values.size:
      out.append(assignment.copy())
      return
    for chosen in itertools.combinations(free, counts[level]):
      assignment[list(chosen)] = values[level]
      place(assignment, [f for f in free if f not in chosen], level + 1)

  place(np.empty(labels.size, values.dtype), list(range(labels.size)), 0)
  return np.array(out)


def _permutation_p(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
  """(two-sided p, K) of the exact permutation test of the slope over the K distinct assignments
  of the depth labels x to the models."""
  observed = abs(float(_slopes(x, y)))
  slopes = np.abs(_slopes(_arrangements(x).astype(np.float64), y))
  tolerance = 1e-9 * max(observed, float(slopes.max()), 1e-300)
  return float(np.mean(slopes >= observed - tolerance)), len(slopes)


def depth_trend(records: pd.DataFrame, metric: str, *, test: str = 'slope_t',
                n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
  """Per family: the slope of the model-level value (each model's mean, as in
  ``hierarchical_bootstrap``) on depth, OLS across the family's models, with a hierarchical
  bootstrap CI (the resampled seeds' values regressed on their depths), Spearman rho of model
  value vs depth, and the test of "no depth effect".

  The unit of a depth effect is the trained model, not the image: images are shared by every
  model, so a per-image test would treat 1000 images as 1000 replicates of a depth effect
  measured on a handful of models (pseudoreplication; Lazic, "The problem of pseudoreplication in
  neuroscientific studies", BMC Neuroscience 2010).

  test='slope_t': t-test of the OLS slope of the model values on depth, n_models - 2 df, p
  two-sided.  For the linear mixed model metric ~ depth + (1 | model) + (1 | image) this is the
  slope test: the image effects are shared by every model and cancel from the model means, and
  with every model scored on the same images (balanced) the mixed model's slope estimate and its
  test of a between-model covariate equal OLS on the model means (Murtaugh, "Simplicity and
  complexity in ecological data analysis", Ecology 2007); balanced means the metric is defined on
  the same images for every model (true of mask-based metrics, masks being per image).  It
  assumes seeds of one depth are independent; an image x depth interaction they share makes it
  liberal, which the bootstrap CI, resampling images, does reflect.
  test='permutation': the exact permutation test: every distinct assignment of the depth labels
  to the family's models, statistic the OLS slope, p = share of assignments with |slope| >=
  the observed.  Its floor is 1 / K for K assignments, 2 / K with evenly spaced depths (the
  mirrored assignment ties): 3 depths x 2 seeds give K = 90, p >= 2/90 ~ 0.022.

  Columns family, metric, slope, low, high, rho, t, df, p, n_models, n_depths, test, note (t and
  df NaN for the permutation test).  Raises BadInput for a family with fewer than 2 depths or 3
  models, or an unknown test.
  """
  if test not in TREND_TESTS:
    raise BadInput(f'test must be one of {TREND_TESTS}, got {test!r}')
  d = _design(records, metric)
  rs = _resampling(d, n_resamples, seed, confidence)
  rows = []
  for family, depths in d.families().items():
    n_models = sum(len(d.groups[family, depth]) for depth in depths)
    if len(depths) < 2 or n_models < 3:
      raise BadInput(f'family {family!r}: a depth trend needs >= 2 depths and >= 3 models, got '
                     f'depths {depths} and {n_models} models')
    parts = [_group(d, rs, (family, depth)) for depth in depths]
    x = np.concatenate([np.full(len(p), depth, np.float64) for (p, _), depth in zip(parts, depths)])
    y = np.concatenate([p for p, _ in parts])
    boot = _slopes(x, np.concatenate([b for _, b in parts], axis=1))
    rho = math.nan if np.ptp(y) == 0 else float(sp_stats.spearmanr(x, y).statistic)
    if test == 'slope_t':
      (t, p, df), note = _slope_t(x, y), ''
    else:
      p, k = _permutation_p(x, y)
      t, df, note = math.nan, math.nan, f'exact over {k} assignments'
    rows.append((family, metric, float(_slopes(x, y)), *_interval(boot, confidence)[:2], rho, t,
                 df, p, n_models, len(depths), test, note))
  return pd.DataFrame(rows, columns=TREND_COLUMNS)


def _check_binary(d: _Design, rows) -> None:
  values = d.values[rows]
  # A hit or a miss; a pointing game whose maximum is tied scores the tied pixels' share in the
  # mask, a value between.
  bad = ~np.isnan(values) & ((values < 0) | (values > 1))
  if bad.any():
    model = d.models[int(rows[np.nonzero(bad.any(axis=1))[0][0]])]
    raise BadInput(f'metric {d.metric!r} is not binary (a share in [0, 1]) for model {model!r}')


def _paired(d: _Design, rs: _Resampling, a, b, binary: bool) -> dict:
  """a - b between two (family, depth) groups, paired over the images defined in every model of
  both: the difference of their values with a hierarchical bootstrap CI, and the per-image
  test of the seed-mean values (Wilcoxon signed-rank, or the exact sign test when binary)."""
  rows = np.concatenate([d.groups[a], d.groups[b]])
  if binary and not d.model_level:
    _check_binary(d, rows)
  keep = ~np.isnan(d.values[rows]).any(axis=0)
  if not keep.any():
    raise BadInput(f'metric {d.metric!r}: no image is defined in every model of {a} and {b}')
  (point_a, boot_a), (point_b, boot_b) = _group(d, rs, a, keep), _group(d, rs, b, keep)
  low, high, skipped = _interval(boot_a.mean(axis=1) - boot_b.mean(axis=1), rs.confidence)
  out = {'difference': float(point_a.mean() - point_b.mean()), 'low': low, 'high': high,
         'n': _n_images(d, rows, keep), 'n_skipped': skipped}
  if d.model_level:
    return {**out, 'test': 'none', 'statistic': math.nan, 'p': math.nan,
            'note': 'ROC-AUC has no per-image test: CI only'}
  per_a = d.values[d.groups[a]][:, keep].mean(axis=0)
  per_b = d.values[d.groups[b]][:, keep].mean(axis=0)
  if binary:
    diff = per_a - per_b
    n_pos, n_nonzero = int((diff > 0).sum()), int((diff != 0).sum())
    if not n_nonzero:
      return {**out, 'test': 'sign', 'statistic': 0.0, 'p': 1.0,
              'note': f'all {diff.size} differences are zero'}
    p = sp_stats.binomtest(n_pos, n_nonzero, 0.5).pvalue
    return {**out, 'test': 'sign', 'statistic': float(n_pos), 'p': float(p),
            'note': f'{n_pos} of {n_nonzero} non-zero differences positive'}
  test = statistics.paired_wilcoxon({'a': per_a, 'b': per_b}).iloc[0]
  return {**out, 'test': 'wilcoxon', 'statistic': float(test['statistic']),
          'p': float(test['p']), 'note': test['note']}


def depth_pairs(records: pd.DataFrame, metric: str, *, binary: bool, n_resamples: int = 2000,
                seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
  """Within each family, every pair of depths, paired over the images defined in every model of
  both: difference = value(deeper) - value(shallower) (values as ``hierarchical_bootstrap``, on
  those images) with its hierarchical bootstrap CI (the same draws), and a two-sided per-image
  test of the seed-mean values: Wilcoxon signed-rank (Wilcoxon 1945) on their differences, or,
  with ``binary`` (0/1 metrics such as pointing game or accuracy), the exact sign test, a
  binomial test of the positive share of the non-zero differences; with one seed per depth it is
  the exact McNemar test on the discordant images (McNemar, Psychometrika 1947).  statistic is
  min(W+, W-) or the number of positive differences.  'roc_auc' has no per-image test: CI only,
  p NaN, with a note.

  Columns family, metric, deeper, shallower, difference, low, high, test, statistic, p, n (paired
  images), n_skipped, note.  Raises BadInput when ``binary`` and a value is not 0 or 1.
  """
  d = _design(records, metric)
  rs = _resampling(d, n_resamples, seed, confidence)
  rows = []
  for family, depths in d.families().items():
    for shallower, deeper in itertools.combinations(depths, 2):
      rows.append({'family': family, 'metric': metric, 'deeper': deeper, 'shallower': shallower,
                   **_paired(d, rs, (family, deeper), (family, shallower), binary)})
  return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def family_pairs(records: pd.DataFrame, metric: str, *, binary: bool,
                 depth_index: Sequence[int] | None = None, n_resamples: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> pd.DataFrame:
  """Families compared at matched depth rank: for each index of ``depth_index`` into every
  family's ascending depths (0 the shallowest, -1 the deepest), every pair of families, a - b,
  with the machinery of ``depth_pairs`` (paired images, hierarchical CI, Wilcoxon or exact sign
  test, ROC-AUC CI only).  The default is every rank when all families have the same number of
  depths, else (0, -1).

  Columns metric, depth_index, family_a, depth_a, family_b, depth_b, difference, low, high,
  test, statistic, p, n, n_skipped, note.  Raises BadInput for fewer than 2 families or an index
  out of range for a family.
  """
  d = _design(records, metric)
  families = d.families()
  if len(families) < 2:
    raise BadInput(f'comparing families needs >= 2 families, got {list(families)}')
  if depth_index is None:
    counts = {len(depths) for depths in families.values()}
    depth_index = range(counts.pop()) if len(counts) == 1 else (0, -1)
  for index in depth_index:
    short = [f for f, depths in families.items() if not -len(depths) <= index < len(depths)]
    if short:
      raise BadInput(f'depth_index {index} is out of range for family {short[0]!r} (depths '
                     f'{families[short[0]]})')
  rs = _resampling(d, n_resamples, seed, confidence)
  rows = []
  for index in depth_index:
    for fa, fb in itertools.combinations(families, 2):
      da, db = families[fa][index], families[fb][index]
      rows.append({'metric': metric, 'depth_index': index, 'family_a': fa, 'depth_a': da,
                   'family_b': fb, 'depth_b': db, **_paired(d, rs, (fa, da), (fb, db), binary)})
  return pd.DataFrame(rows, columns=FAMILY_PAIR_COLUMNS)


def chance_level(metric: str, records: pd.DataFrame) -> np.ndarray | None:
  """Per records row, the analytic chance level of ``metric`` for an uninformative heat map, or
  None where none exists (EHR-AUC, IoU, Dice, faithfulness metrics, accuracy, ...).

  Derivations (f = the row's mask_fraction, lesion pixels / image pixels): pointing game
  (Zhang et al., IJCV 2018): a uniformly random maximum lands in the mask with probability f
  (f (1 - f) for its size-weighted form); relevance mass (Arras et al. 2022): a constant map puts
  a share f of its heat in the mask (1 for the weighted form of Kohlbrenner et al. 2020); relevance
  rank and top-k intersection: the top pixels of an exchangeable random map are a uniformly
  random subset, a share f of them inside; pixel PR-AUC: the prevalence f (the average precision
  of a constant map); pixel ROC-AUC and classification ROC-AUC: 0.5.  Localisation chance is NaN
  on rows without a mask.  Raises BadInput when mask_fraction is missing or outside [0, 1] on a
  masked row.
  """
  if metric == 'roc_auc':
    return np.full(len(records), 0.5)
  if metric not in _CHANCE:
    return None
  missing = [c for c in ('has_mask', 'mask_fraction') if c not in records.columns]
  if missing:
    raise BadInput(f'records lack columns {missing}')
  masked = records['has_mask'].to_numpy(dtype=bool)
  fraction = records['mask_fraction'].to_numpy(dtype=np.float64)
  bad = masked & ~((fraction >= 0) & (fraction <= 1))
  if bad.any():
    row = records.iloc[int(np.nonzero(bad)[0][0])]
    raise BadInput(f'model {row.get("model")!r}, image {row.get("id")!r}: mask_fraction '
                   f'{row["mask_fraction"]} is not in [0, 1]')
  return np.where(masked, _CHANCE[metric](np.where(masked, fraction, 0.0)), np.nan)


def _mean_test(excess: np.ndarray) -> dict:
  """One-sample t-test of mean(excess) == 0, two-sided (Student 1908): a test of the mean, which
  is what the excess reports; a rank test would test the median, which for a 0/1 metric such as
  the pointing game sits at -f for any model that hits fewer than half the lesions."""
  if excess.size < 2 or np.all(excess == excess[0]):
    return dict(test='t', statistic=math.nan, p=math.nan,
                note='fewer than 2 images or no variation: no test')
  t = sp_stats.ttest_1samp(excess, 0.0)
  return dict(test='t', statistic=float(t.statistic), p=float(t.pvalue), note='')


def beats_chance(records: pd.DataFrame, metric: str, *, n_resamples: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> pd.DataFrame:
  """Per (family, depth): excess = mean of metric - chance (``chance_level``), with the
  hierarchical bootstrap CI, and a two-sided one-sample t-test of the per-image excess of the
  seed-mean metric over the images defined in every seed (``_mean_test``).

  The test is at the image level: the question is whether these trained models beat an
  uninformative map on these images, a question about images given the models; with two or three
  seeds a model-level test has one or two degrees of freedom and no power, while the CI carries
  the seed variance.  'roc_auc' (chance 0.5) has no per-image test: CI only, p NaN.

  Columns family, depth, metric, excess, low, high, test, statistic, p, n_seeds, n_images, note.
  Raises BadInput for a metric without an analytic chance level.
  """
  chance = chance_level(metric, records)
  if chance is None:
    raise BadInput(f'metric {metric!r} has no analytic chance level; those that do: '
                   f'{sorted(_CHANCE) + ["roc_auc"]}')
  d = _design(records, metric, chance)
  rs = _resampling(d, n_resamples, seed, confidence)
  rows = []
  for key, members in d.groups.items():
    points, boot = _group(d, rs, key)
    offset = 0.5 if d.model_level else 0.0
    low, high, _ = _interval(boot.mean(axis=1) - offset, confidence)
    row = {'family': key[0], 'depth': key[1], 'metric': metric,
           'excess': float(points.mean() - offset), 'low': low, 'high': high,
           'n_seeds': len(members), 'n_images': _n_images(d, members)}
    if d.model_level:
      row.update(test='none', statistic=math.nan, p=math.nan,
                 note='ROC-AUC has no per-image test: CI only')
    else:
      values = d.values[members]
      excess = values[:, ~np.isnan(values).any(axis=0)].mean(axis=0)
      if not excess.size:
        raise BadInput(f'metric {metric!r}: no image is defined in every model of {key}')
      row.update(_mean_test(excess))
    rows.append(row)
  return pd.DataFrame(rows, columns=CHANCE_COLUMNS)


def holm_all(tables: list[pd.DataFrame]) -> list[pd.DataFrame]:
  """Copies of ``tables`` with ``p_holm``: the Holm adjustment (``statistics.holm``; Holm 1979)
  over every test of all of them together, the rows with a non-NaN p (NaN p stays NaN), so the
  family-wise error rate holds over everything a report claims, not per metric."""
  if not tables:
    return []
  for i, table in enumerate(tables):
    if 'p' not in table.columns:
      raise BadInput(f'table {i} has no column \'p\'')
  p = np.concatenate([t['p'].to_numpy(dtype=np.float64) for t in tables])
  adjusted = np.full_like(p, np.nan)
  tested = ~np.isnan(p)
  adjusted[tested] = statistics.holm(p[tested])
  bounds = np.cumsum([0] + [len(t) for t in tables])
  return [t.assign(p_holm=adjusted[lo:hi]) for t, lo, hi in zip(tables, bounds[:-1], bounds[1:])]
