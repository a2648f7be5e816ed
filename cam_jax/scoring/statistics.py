"""Percentile bootstrap confidence intervals (Efron & Tibshirani 1993), numpy."""

import numpy as np


def _resample_indices(n, n_resamples, seed):
    if n == 0:
        raise ValueError('cannot bootstrap an empty sample')
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _percentile_interval(stats, confidence):
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must be in (0, 1), got {confidence}')
    alpha = 1 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(values, statistic=np.mean, n_resamples=2000, confidence=0.95, seed=0):
    """Percentile bootstrap CI of ``statistic`` over the items of 1-D ``values``.

    ``statistic(x, axis=-1)`` is applied once to an (n_resamples, n) array of
    resamples, so it must accept ``axis`` (np.mean, np.median, ... do).
    Returns ``(point, low, high)`` with point = statistic(values).  Memory is
    O(n_resamples * n).  Raises ValueError for empty or non-1-D input.
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f'values must be 1-D, got shape {values.shape}')
    idx = _resample_indices(values.size, n_resamples, seed)
    stats = statistic(values[idx], axis=-1)
    return (float(statistic(values, axis=-1)), *_percentile_interval(stats, confidence))


def bootstrap_ci_fn(fn, arrays, n_resamples=2000, confidence=0.95, seed=0):
    """Percentile bootstrap CI of ``fn(*arrays)`` for aligned arrays resampled
    together (the same index row for every array), e.g. ROC-AUC of
    (labels, scores).

    ``fn`` is called once per resample; resamples where it raises ValueError
    (e.g. a single class) are skipped.  Returns ``(point, low, high,
    n_skipped)``.  Raises ValueError when the arrays differ in length, are
    empty, or every resample is skipped.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f'arrays differ in length: {[len(a) for a in arrays]}')
    stats = []
    for row in _resample_indices(n, n_resamples, seed):
        try:
            stats.append(fn(*(a[row] for a in arrays)))
        except ValueError:
            continue
    if not stats:
        raise ValueError('fn raised ValueError on every resample')
    return (float(fn(*arrays)), *_percentile_interval(stats, confidence), n_resamples - len(stats))


def format_ci(point, low, high, digits=3) -> str:
    """'point [low, high]' with ``digits`` decimals, e.g. '0.912 [0.874, 0.945]'."""
    return f'{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]'
