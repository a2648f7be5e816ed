"""Per-image records -> summary tables: each metric with a percentile bootstrap 95% CI.

Classification metrics are taken over every image (probabilities that are not finite are
reported in a note, never dropped); localisation metrics over the images with a lesion mask;
faithfulness metrics over every image that has them (deletion / insertion: the positives).
Records are written and read as CSV or Parquet (by file extension).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cam_jax.analysis import statistics
from cam_jax.core.errors import BadInput
from cam_jax.metrics import classification, localisation

LOCALISATION_METRICS = ('ehr_auc', 'pointing_game', 'pointing_game_weighted', 'relevance_mass',
                        'relevance_mass_weighted', 'relevance_rank', 'top_k', 'iou', 'dice',
                        'iou_otsu', 'dice_otsu', 'iou_otsu_plain', 'dice_otsu_plain',
                        'pixel_roc_auc', 'pixel_pr_auc')
FAITHFULNESS_METRICS = ('deletion_auc', 'insertion_auc', 'deletion_auc_predicted',
                        'insertion_auc_predicted', 'road_morf', 'road_lerf')
SIZE_STRATA = ('small', 'medium', 'large')
SUMMARY_COLUMNS = ['metric', 'value', 'low', 'high', 'n', 'n_skipped', 'note']


def grid_column(prefix: str, threshold: float) -> str:
  """The records column of ``prefix`` ('iou' or 'dice') at one of ``localisation.THRESHOLDS``."""
  return f'{prefix}@{threshold:.2f}'


RECORD_FORMATS = ('.csv', '.parquet')


def check_records_path(path: str) -> str:
  """``path`` if it ends in .csv or .parquet, the formats records are written in."""
  if not path.endswith(RECORD_FORMATS):
    raise BadInput(f'{path}: records are written and read as .csv or .parquet')
  return path


def write_records(records: pd.DataFrame, path: str) -> None:
  """Writes records to ``path``: Parquet for ``.parquet``, CSV for ``.csv``."""
  if check_records_path(path).endswith('.parquet'):
    records.to_parquet(path, index=False)
  else:
    records.to_csv(path, index=False)


def read_records(path: str) -> pd.DataFrame:
  """Records written by ``write_records``: empty metrics read as NaN, empty flags as ''."""
  if check_records_path(path).endswith('.parquet'):
    records = pd.read_parquet(path)
  else:
    records = pd.read_csv(path, dtype={'id': str, 'model': str, 'layer': str, 'method': str,
                                       'flags': str})
  return records.fillna({'flags': ''})


def tune_threshold(records: pd.DataFrame) -> float:
  """The threshold of ``localisation.THRESHOLDS`` with the highest mean IoU over the records'
  lesion images (CheXlocalize's validation-tuned threshold, Saporta et al. 2022)."""
  scored = records[records['has_mask']]
  columns = [grid_column('iou', t) for t in localisation.THRESHOLDS]
  missing = [c for c in columns if c not in scored]
  if missing or scored.empty:
    raise BadInput('tuning a threshold needs localisation records of lesion images with the '
                   f'IoU grid columns ({columns[0]} ... {columns[-1]})')
  return localisation.tuned_threshold(scored[columns].to_numpy())


def _classification_rows(records, n_resamples, seed):
  """A row per classification metric; one that cannot be computed says why in ``note``. Records
  without probabilities (a random heat map's) have no classification rows."""
  if 'prob' not in records or records['prob'].isna().all():
    return []
  y, p = records['label'].to_numpy(), records['prob'].to_numpy(dtype=np.float64)
  names = classification.CLASSIFICATION_METRICS

  def metrics(y, p):
    out = classification.classification_metrics(y, p)
    return {m: out[m] for m in names}  # None where undefined on the sample

  nonfinite = int((~np.isfinite(p)).sum())
  if nonfinite:
    note = (f'not computed: {nonfinite} of {len(p)} probabilities are not finite (a diverged '
            'model?)')
    return [(m, np.nan, np.nan, np.nan, len(y), 0, note) for m in names]
  cis = statistics.bootstrap_cis(metrics, (y, p), n_resamples=n_resamples, seed=seed)
  points = metrics(y, p) if set(names) - set(cis) else {}  # only to say why a CI is missing
  rows = []
  for m in names:
    if m in cis:
      point, low, high, skipped = cis[m]
      note = (f'{skipped} of {n_resamples} resamples skipped (undefined on them)' if skipped
              else '')
      rows.append((m, point, low, high, len(y), skipped, note))
    elif points[m] is None:
      rows.append((m, np.nan, np.nan, np.nan, len(y), 0, 'undefined on these images'))
    else:
      rows.append((m, points[m], np.nan, np.nan, len(y), n_resamples,
                   'no CI: undefined on every resample'))
  return rows


def _mean_rows(frame, metrics, n_resamples, seed):
  rows = []
  for m in metrics:
    if m in frame:
      values = frame[m].dropna().to_numpy()
      if len(values):
        rows.append((m, *statistics.bootstrap_ci(values, n_resamples=n_resamples, seed=seed),
                     len(values), 0, ''))
  return rows


def check_threshold(threshold: float | None) -> float | None:
  """``threshold`` if it is None or one of ``localisation.THRESHOLDS`` (the IoU grid)."""
  if threshold is not None and not np.isclose(localisation.THRESHOLDS, threshold).any():
    raise BadInput(f'tuned threshold {threshold} is not one of localisation.THRESHOLDS')
  return threshold


def _tuned(scored: pd.DataFrame, threshold: float) -> pd.DataFrame:
  check_threshold(threshold)
  return pd.DataFrame({f'{p}_tuned': scored[grid_column(p, threshold)] for p in ('iou', 'dice')})


def summarise(records: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0,
              tuned_threshold: float | None = None) -> pd.DataFrame:
  """Rows ``metric, value, low, high, n, n_skipped, note``: classification, localisation (with
  ``iou_tuned`` and ``dice_tuned`` at ``tuned_threshold`` when given), faithfulness, and
  ``flagged``, the count of degenerate heat maps among the lesion images. ``n_skipped`` counts
  the bootstrap resamples on which a metric was undefined; ``note`` says so, or why a metric
  has no value (non-finite probabilities, a class absent)."""
  rows = _classification_rows(records, n_resamples, seed)
  scored = records[records['has_mask']] if 'has_mask' in records else records.iloc[:0]
  rows += _mean_rows(scored, LOCALISATION_METRICS, n_resamples, seed)
  if tuned_threshold is not None and len(scored):
    rows += _mean_rows(_tuned(scored, tuned_threshold), ('iou_tuned', 'dice_tuned'),
                       n_resamples, seed)
  rows += _mean_rows(records, FAITHFULNESS_METRICS, n_resamples, seed)
  if 'flags' in scored and len(scored):
    rows.append(('flagged', float((scored['flags'] != '').sum()), np.nan, np.nan, len(scored), 0,
                 'degenerate heat maps among the lesion images'))
  return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def size_strata(records: pd.DataFrame) -> pd.Series:
  """'small' / 'medium' / 'large' lesion per image: terciles of ``mask_fraction`` over the
  records' lesion images (NaN for images without one). The same images give the same
  boundaries, so models scored on one data set share their strata."""
  fraction = records['mask_fraction'].where(records['has_mask'])
  if fraction.notna().sum() < len(SIZE_STRATA):
    return pd.Series(np.nan, index=records.index, dtype=object)
  ranks = fraction.rank(method='first')
  return pd.qcut(ranks, len(SIZE_STRATA), labels=SIZE_STRATA).astype(object)


def by_lesion_size(records: pd.DataFrame, *, n_resamples: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
  """Localisation metrics per lesion-size tercile: rows ``stratum, fraction_low, fraction_high,
  metric, value, low, high, n, n_skipped, note`` (empty without ``mask_fraction``)."""
  columns = ['stratum', 'fraction_low', 'fraction_high', *SUMMARY_COLUMNS]
  if 'mask_fraction' not in records:
    return pd.DataFrame(columns=columns)
  strata = size_strata(records)
  rows = []
  for stratum in SIZE_STRATA:
    group = records[strata == stratum]
    if group.empty:
      continue
    span = (group['mask_fraction'].min(), group['mask_fraction'].max())
    rows += [(stratum, *span, *r) for r in _mean_rows(group, LOCALISATION_METRICS, n_resamples,
                                                      seed)]
  return pd.DataFrame(rows, columns=columns)
