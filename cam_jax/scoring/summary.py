"""Per-image records -> a summary table: each metric with a percentile bootstrap 95% CI."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cam_jax.scoring import classification, statistics

LOCALISATION_METRICS = ('ehr_auc', 'pointing_game', 'iou', 'dice')


def read_records(path: str) -> pd.DataFrame:
  """Per-image records written with ``DataFrame.to_csv``: empty metrics read as NaN, empty flags
  as ''."""
  records = pd.read_csv(path, dtype={'id': str, 'layer': str, 'flags': str})
  return records.fillna({'flags': ''})


def summarise(records: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
  """Rows ``metric, value, low, high, n``: accuracy and ROC-AUC over every image (when a
  ``prob`` column exists), localisation metrics over the images with a lesion mask."""
  rows = []
  classified = records[records['prob'].notna()] if 'prob' in records else records.iloc[:0]
  if len(classified):
    y, p = classified['label'].to_numpy(), classified['prob'].to_numpy()
    correct = ((p >= 0.5).astype(int) == y).astype(float)
    rows.append(('accuracy', *statistics.bootstrap_ci(correct, n_resamples=n_resamples,
                                                      seed=seed), len(y)))
    if len(np.unique(y)) == 2:
      point, low, high, _ = statistics.bootstrap_ci_fn(
          classification.roc_auc, (y, p), n_resamples=n_resamples, seed=seed)
      rows.append(('roc_auc', point, low, high, len(y)))
  scored = records[records['has_mask']] if 'has_mask' in records else records.iloc[:0]
  for m in LOCALISATION_METRICS:
    if m in scored and len(scored):
      rows.append((m, *statistics.bootstrap_ci(scored[m].to_numpy(), n_resamples=n_resamples,
                                               seed=seed), len(scored)))
  if 'flags' in scored:
    rows.append(('flagged', float((scored['flags'] != '').sum()), np.nan, np.nan, len(scored)))
  return pd.DataFrame(rows, columns=['metric', 'value', 'low', 'high', 'n'])
