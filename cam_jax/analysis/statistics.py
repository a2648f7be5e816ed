"""Confidence intervals and paired tests for comparing models on the same items (images), numpy.

Intervals are percentile bootstrap intervals (Efron & Tibshirani, An Introduction to the
Bootstrap, 1993).  A paired bootstrap draws one set of resampled item indices and applies it to
every model, so an interval of a difference between models accounts for their correlation per
item.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats as sp_stats

from cam_jax.metrics.classification import binary_labels

# A model-level quantity: a number fixed per model, or fn(item indices) -> float.
Quantity = float | Callable[[np.ndarray], float]

PAIRED_COLUMNS = ['a', 'b', 'point', 'low', 'high', 'n', 'n_skipped']
TEST_COLUMNS = ['a', 'b', 'test', 'statistic', 'p', 'p_holm', 'n', 'note']


def resample_indices(n, n_resamples, seed):
  """(n_resamples, n) item indices drawn with replacement from numpy's default_rng(seed): the
  draws every bootstrap here shares, so intervals computed with one seed pair up."""
  if n == 0:
    raise ValueError('cannot bootstrap an empty sample')
  if n_resamples < 1:
    raise ValueError(f'n_resamples must be >= 1, got {n_resamples}')
  return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(stats, confidence):
  """(low, high): the central ``confidence`` share of the bootstrap ``stats``."""
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence}')
  alpha = 1 - confidence
  low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
  return float(low), float(high)


def bootstrap_ci(values, statistic=np.mean, n_resamples=2000, confidence=0.95, seed=0):
  """Percentile bootstrap CI of ``statistic`` over the items of 1-D ``values``.

  ``statistic(x, axis=-1)`` is applied once to an (n_resamples, n) array of resamples, so it must
  accept ``axis`` (np.mean, np.median, ... do).  Returns ``(point, low, high)`` with point =
  statistic(values).  Memory is O(n_resamples * n).  Raises ValueError for empty or non-1-D
  input.
  """
  values = np.asarray(values)
  if values.ndim != 1:
    raise ValueError(f'values must be 1-D, got shape {values.shape}')
  idx = resample_indices(values.size, n_resamples, seed)
  stats = statistic(values[idx], axis=-1)
  return (float(statistic(values, axis=-1)), *percentile_interval(stats, confidence))


def bootstrap_cis(fn, arrays, n_resamples=2000, confidence=0.95, seed=0) -> dict:
  """Percentile bootstrap CIs of several statistics computed together, ``fn(*arrays) -> {name:
  value or None}``, for aligned arrays resampled together (the same index row for every array).

  ``fn`` is called once per resample; resamples where it raises ValueError are skipped for
  every name, and a None value skips that resample for that name only. Returns ``{name: (point,
  low, high, n_skipped)}`` for the names whose point and at least one resample are defined.
  Raises ValueError when the arrays differ in length or are empty, and whatever ``fn`` raises on
  the full arrays.
  """
  arrays = tuple(np.asarray(a) for a in arrays)
  n = len(arrays[0])
  if any(len(a) != n for a in arrays):
    raise ValueError(f'arrays differ in length: {[len(a) for a in arrays]}')
  rows = resample_indices(n, n_resamples, seed)
  points = fn(*arrays)
  stats = {name: [] for name, value in points.items() if value is not None}
  for row in rows:
    try:
      values = fn(*(a[row] for a in arrays))
    except ValueError:
      continue
    for name, collected in stats.items():
      if values[name] is not None:
        collected.append(values[name])
  return {name: (float(points[name]), *percentile_interval(collected, confidence),
                 n_resamples - len(collected))
          for name, collected in stats.items() if collected}


def bootstrap_ci_fn(fn, arrays, n_resamples=2000, confidence=0.95, seed=0):
  """Percentile bootstrap CI of ``fn(*arrays)`` for aligned arrays resampled together (the same
  index row for every array), e.g. ROC-AUC of (labels, scores).

  ``fn`` is called once per resample; resamples where it raises ValueError (e.g. a single class)
  are skipped.  Returns ``(point, low, high, n_skipped)``.  Raises ValueError when the arrays
  differ in length, are empty, or every resample is skipped.
  """
  cis = bootstrap_cis(lambda *a: {'value': fn(*a)}, arrays, n_resamples=n_resamples,
                      confidence=confidence, seed=seed)
  if 'value' not in cis:
    raise ValueError('fn raised ValueError on every resample')
  return cis['value']


def format_ci(point, low, high, digits=3) -> str:
  """'point [low, high]' with ``digits`` decimals, e.g. '0.912 [0.874, 0.945]'; 'n/a' for an
  undefined point and 'point [CI n/a]' for a point whose interval could not be computed, never
  'nan'."""
  if np.isnan(point):
    return 'n/a'
  if np.isnan(low) or np.isnan(high):
    return f'{point:.{digits}f} [CI n/a]'
  return f'{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]'


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
  """Wilson score interval of a binomial proportion ``successes / n`` (Wilson, "Probable
  inference, the law of succession, and statistical inference", JASA 1927; no continuity
  correction, as ``scipy.stats.binomtest(...).proportion_ci(method='wilson')``). Raises
  ValueError for n < 1 or successes outside [0, n]."""
  if n < 1 or not 0 <= successes <= n:
    raise ValueError(f'need 0 <= successes <= n and n >= 1, got {successes} of {n}')
  ci = sp_stats.binomtest(int(successes), int(n)).proportion_ci(confidence, method='wilson')
  return float(ci.low), float(ci.high)


def difference_interval(successes_a: int, n_a: int, successes_b: int, n_b: int,
                        confidence: float = 0.95) -> tuple[float, float, float]:
  """``(p_a - p_b, low, high)`` for two independent proportions: Newcombe's hybrid score
  interval ("Interval estimation for the difference between independent proportions", Stat.
  Med. 1998, method 10), built from each proportion's Wilson interval."""
  p_a, p_b = successes_a / n_a, successes_b / n_b
  low_a, high_a = wilson_interval(successes_a, n_a, confidence)
  low_b, high_b = wilson_interval(successes_b, n_b, confidence)
  d = p_a - p_b
  return (float(d), float(d - np.hypot(p_a - low_a, high_b - p_b)),
          float(d + np.hypot(high_a - p_a, p_b - low_b)))


def _aligned(samples: Mapping[str, np.ndarray], min_samples: int = 1) -> np.ndarray:
  """(M, n) float array of the samples; ValueError unless they are 1-D, equally long, non-empty
  and free of NaN."""
  if len(samples) < min_samples:
    raise ValueError(f'need at least {min_samples} samples, got {len(samples)}')
  arrays = {k: np.asarray(v, dtype=np.float64) for k, v in samples.items()}
  for name, a in arrays.items():
    if a.ndim != 1:
      raise ValueError(f'sample {name!r} must be 1-D, got shape {a.shape}')
    if np.isnan(a).any():
      raise ValueError(f'sample {name!r} has {int(np.isnan(a).sum())} NaN of {a.size} items; '
                       'align the samples first (keep the items defined in every sample)')
  lengths = {k: a.size for k, a in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f'samples must be aligned on the same items; lengths differ: {lengths}')
  if not next(iter(lengths.values())):
    raise ValueError('samples are empty')
  return np.stack(list(arrays.values()))


def _paired_table(names, points, boot, confidence, n, n_skipped) -> pd.DataFrame:
  rows = [(a, '', float(points[i]), *percentile_interval(boot[:, i], confidence), n, n_skipped)
          for i, a in enumerate(names)]
  for i, j in itertools.combinations(range(len(names)), 2):
    rows.append((names[i], names[j], float(points[i] - points[j]),
                 *percentile_interval(boot[:, i] - boot[:, j], confidence), n, n_skipped))
  return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def paired_bootstrap(samples: Mapping[str, np.ndarray], statistic=np.mean, n_resamples=2000,
                     confidence=0.95, seed=0) -> pd.DataFrame:
  """Paired percentile bootstrap of ``statistic`` for samples aligned on the same items.

  ``samples`` maps a model name to its 1-D per-item values; one (n_resamples, n) index array is
  drawn and shared by every sample (the same draws as ``bootstrap_ci`` with this seed).
  ``statistic(x, axis=-1)`` must accept ``axis``.  Returns columns ``a, b, point, low, high, n,
  n_skipped`` (n_skipped is 0): one row per model (``b`` is ''; point = statistic(a)) and one per
  pair in the samples' order (point = statistic(a) - statistic(b), its interval from the
  per-resample differences).  NaN items raise ValueError: align first.
  """
  values = _aligned(samples)
  idx = resample_indices(values.shape[1], n_resamples, seed)
  boot = np.stack([statistic(v[idx], axis=-1) for v in values], axis=1)
  return _paired_table(list(samples), statistic(values, axis=-1), boot, confidence,
                       values.shape[1], 0)


def _evaluate(quantities: Mapping[str, Quantity], idx: np.ndarray) -> np.ndarray:
  """(len(idx), M) values of the quantities on each index row; NaN where one raised
  ValueError.  A number is a quantity fixed per model (e.g. depth)."""
  out = np.full((len(idx), len(quantities)), np.nan)
  for m, q in enumerate(quantities.values()):
    if not callable(q):
      out[:, m] = float(q)
      continue
    for r, row in enumerate(idx):
      try:
        out[r, m] = q(row)
      except ValueError:
        pass
  return out


def _points(quantities: Mapping[str, Quantity], n_items: int) -> np.ndarray:
  """Full-sample values; a ValueError from a quantity propagates."""
  every = np.arange(n_items)
  return np.array([q(every) if callable(q) else q for q in quantities.values()], dtype=np.float64)


def paired_bootstrap_fn(quantities: Mapping[str, Callable[[np.ndarray], float]], n_items: int,
                        n_resamples=2000, confidence=0.95, seed=0) -> pd.DataFrame:
  """``paired_bootstrap`` for a statistic that is not a reduction over items, e.g. ROC-AUC.

  ``quantities`` maps a model name to ``fn(idx) -> float`` of item indices into its aligned
  arrays, e.g. ``lambda idx: roc_auc(labels[idx], probs[idx])``.  Each resample's index row is
  shared by every model; a resample where any model's fn raises ValueError (or gives NaN) is
  skipped for all of them, keeping the pairing.  Same table as ``paired_bootstrap``, with
  n_skipped.  Raises ValueError when the full-sample value is undefined or every resample is
  skipped.
  """
  if not quantities:
    raise ValueError('quantities is empty')
  points = _points(quantities, n_items)
  if np.isnan(points).any():
    raise ValueError(f'NaN on the full sample for {np.asarray(list(quantities))[np.isnan(points)]}')
  boot = _evaluate(quantities, resample_indices(n_items, n_resamples, seed))
  keep = ~np.isnan(boot).any(axis=1)
  if not keep.any():
    raise ValueError('every resample was undefined for some model')
  return _paired_table(list(quantities), points, boot[keep], confidence, n_items,
                       n_resamples - int(keep.sum()))


def holm(p_values) -> np.ndarray:
  """Holm step-down adjusted p-values (Holm, "A simple sequentially rejective multiple test
  procedure", Scand. J. Statist. 1979): the k-th smallest of m p-values becomes
  max over j <= k of min(1, (m - j + 1) p_(j)), returned in the input order.

  Rejecting where the adjusted value is <= alpha controls the family-wise error rate at alpha.
  Raises ValueError for p-values outside [0, 1] or NaN.
  """
  p = np.asarray(p_values, dtype=np.float64)
  if p.ndim != 1:
    raise ValueError(f'p_values must be 1-D, got shape {p.shape}')
  if not ((p >= 0) & (p <= 1)).all():
    raise ValueError(f'p-values must lie in [0, 1], got {p[~((p >= 0) & (p <= 1))]}')
  order = np.argsort(p, kind='stable')
  steps = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
  adjusted = np.empty_like(p)
  adjusted[order] = np.minimum(steps, 1.0)
  return adjusted


def _pairwise_tests(names, test_name, test, n) -> pd.DataFrame:
  """Runs ``test(i, j) -> (statistic, p, note)`` on every pair and adds Holm-adjusted p."""
  rows = [(names[i], names[j], test_name, *test(i, j))
          for i, j in itertools.combinations(range(len(names)), 2)]
  table = pd.DataFrame(rows, columns=['a', 'b', 'test', 'statistic', 'p', 'note'])
  table['p_holm'] = holm(table['p'].to_numpy())
  table['n'] = n
  return table[TEST_COLUMNS]


def paired_wilcoxon(samples: Mapping[str, np.ndarray]) -> pd.DataFrame:
  """Two-sided Wilcoxon signed-rank test (Wilcoxon, Biometrics Bulletin 1945) of a - b for every
  pair of samples aligned on the same items, Holm-adjusted over the pairs.

  Runs ``scipy.stats.wilcoxon`` on the differences with its defaults: zero differences are
  dropped (zero_method='wilcox'; the note counts them), exact or permutation p-values for few
  non-zero differences, the normal approximation otherwise.  A pair whose differences are all
  zero gets statistic 0 and p = 1 with a note.  Columns ``a, b, test, statistic, p, p_holm, n,
  note``; statistic is min(W+, W-).  NaN items raise ValueError: align first.
  """
  values = _aligned(samples, min_samples=2)

  def test(i, j):
    d = values[i] - values[j]
    zeros = int(np.sum(d == 0))
    if zeros == d.size:
      return 0.0, 1.0, f'all {zeros} differences are zero'
    result = sp_stats.wilcoxon(d)
    return float(result.statistic), float(result.pvalue), (
        f'{zeros} zero differences dropped' if zeros else '')

  return _pairwise_tests(list(samples), 'wilcoxon', test, values.shape[1])


def _delong_components(labels: np.ndarray, scores: np.ndarray):
  """Per-positive and per-negative placement values of one model's scores: the share of
  negatives below each positive and of positives above each negative, ties 1/2."""
  pos, neg = scores[labels], scores[~labels]
  neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
  below = np.searchsorted(neg_sorted, pos, 'left')
  v10 = (below + 0.5 * (np.searchsorted(neg_sorted, pos, 'right') - below)) / neg.size
  at_most = np.searchsorted(pos_sorted, neg, 'right')
  v01 = (pos.size - at_most + 0.5 * (at_most - np.searchsorted(pos_sorted, neg, 'left'))) / pos.size
  return v10, v01


def paired_delong(labels, scores: Mapping[str, np.ndarray]) -> pd.DataFrame:
  """DeLong test of equal ROC-AUC for every pair of models scored on the same items (DeLong,
  DeLong & Clarke-Pearson, "Comparing the areas under two or more correlated ROC curves",
  Biometrics 1988), Holm-adjusted over the pairs.

  statistic is z = (AUC_a - AUC_b) / SE from the placement values' covariances, p two-sided
  normal.  When the variance estimate is exactly zero: z = 0, p = 1 for equal AUCs, else
  z = +-inf, p = 0, each with a note.  Columns as ``paired_wilcoxon``.  Raises ValueError with
  fewer than 2 positives or 2 negatives, or non-finite scores.
  """
  labels = binary_labels(labels)
  values = _aligned(scores, min_samples=2)
  if values.shape[1] != labels.size:
    raise ValueError(f'labels and scores differ in length: {labels.size} vs {values.shape[1]}')
  if not np.isfinite(values).all():
    raise ValueError('scores must be finite')
  n_pos = int(labels.sum())
  if min(n_pos, labels.size - n_pos) < 2:
    raise ValueError(f'the DeLong test needs >= 2 positives and >= 2 negatives; got {n_pos} '
                     f'positive, {labels.size - n_pos} negative')
  parts = [_delong_components(labels, v) for v in values]

  def test(i, j):
    d10, d01 = parts[i][0] - parts[j][0], parts[i][1] - parts[j][1]
    diff = d10.mean()  # AUC_a - AUC_b
    if np.ptp(d10) == 0 and np.ptp(d01) == 0:
      if diff == 0:
        return 0.0, 1.0, 'identical placement values: zero variance'
      return float(np.sign(diff) * np.inf), 0.0, 'zero variance estimate with unequal AUC'
    z = diff / np.sqrt(d10.var(ddof=1) / d10.size + d01.var(ddof=1) / d01.size)
    return float(z), float(2 * sp_stats.norm.sf(abs(z))), ''

  return _pairwise_tests(list(scores), 'delong', test, labels.size)


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Row-wise Spearman rho of (R, M) arrays (Pearson of average ranks); NaN where a row of
  either is constant."""
  rx = sp_stats.rankdata(x, axis=1)
  ry = sp_stats.rankdata(y, axis=1)
  rx -= rx.mean(axis=1, keepdims=True)
  ry -= ry.mean(axis=1, keepdims=True)
  denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
  with np.errstate(invalid='ignore', divide='ignore'):
    rho = (rx * ry).sum(axis=1) / denom
  return np.where(denom > 0, np.clip(rho, -1.0, 1.0), np.nan)


def spearman_bootstrap(x: Mapping[str, Quantity], y: Mapping[str, Quantity], *, n_items: int,
                       n_resamples=2000, confidence=0.95, seed=0) -> dict:
  """Spearman rank correlation across models (Spearman, Am. J. Psychol. 1904) between two
  model-level quantities, with a percentile bootstrap CI over items resampled jointly across
  models; e.g. depth vs mean EHR-AUC, or accuracy vs mean pointing game, the question of Qiu,
  Rivaz & Xiao ("Is Grad-CAM explainable in medical images?", MLMI 2023).

  ``x`` and ``y`` map the same model names to a number (fixed per model, e.g. depth) or to
  ``fn(idx) -> float`` of indices into that model's ``n_items`` aligned items (recomputed on
  every resample; one index row per resample is shared by every model and by x and y).  A
  resample is skipped when a fn raises ValueError or gives NaN there, or x or y is constant
  across models (rho undefined).  Returns a dict with 'rho', 'low', 'high' (None where
  undefined, never NaN: all three when x or y is constant on the full sample, the interval when
  every resample is skipped; 'note' says which), 'n_models', 'n_resamples', 'n_skipped' (the
  resamples not in the interval).  Raises ValueError when x and y name different models, for
  fewer than 3 models, or when a fn fails on the full sample.
  """
  if set(x) != set(y):
    raise ValueError(f'x and y must name the same models; only in x: {sorted(set(x) - set(y))}, '
                     f'only in y: {sorted(set(y) - set(x))}')
  if len(x) < 3:
    raise ValueError(f'a rank correlation across models needs at least 3 models, got {len(x)}')
  y = {m: y[m] for m in x}
  out = {'rho': None, 'low': None, 'high': None, 'n_models': len(x),
         'n_resamples': n_resamples, 'n_skipped': n_resamples, 'note': ''}
  points = np.stack([_points(x, n_items), _points(y, n_items)])
  if np.isnan(points).any():
    raise ValueError('a quantity is NaN on the full sample')
  constant = [name for name, v in zip('xy', points) if np.ptp(v) == 0]
  if constant:
    out['note'] = f'{" and ".join(constant)} constant across models: rho undefined'
    return out
  out['rho'] = float(_rank_correlation(points[:1], points[1:])[0])
  idx = resample_indices(n_items, n_resamples, seed)
  rho = _rank_correlation(_evaluate(x, idx), _evaluate(y, idx))
  rho = rho[~np.isnan(rho)]
  out['n_skipped'] = n_resamples - rho.size
  if not rho.size:
    out['note'] = 'every resample undefined'
    return out
  out['low'], out['high'] = percentile_interval(rho, confidence)
  return out
