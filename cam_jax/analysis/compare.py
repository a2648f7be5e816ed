"""Tables that compare models scored on the same images, for a paper: per-model values and paired
differences with bootstrap CIs and Holm-adjusted tests, and rank correlations of depth and of
accuracy with each metric, the question of Qiu, Rivaz & Xiao ("Is visual explanation with
Grad-CAM more reliable for deeper neural networks? A case study with automatic pneumothorax
diagnosis", MLMI 2023): does a deeper or more accurate network give better heat maps?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cam_jax.analysis import statistics
from cam_jax.core.errors import BadInput
from cam_jax.metrics.classification import binary_labels, roc_auc

# The classification metrics compare_models pairs, over every image: accuracy (Wilcoxon on
# per-image correctness) and ROC-AUC (DeLong); the others of
# metrics.classification.CLASSIFICATION_METRICS have no paired test here.
PAIRED_CLASSIFICATION = ('accuracy', 'roc_auc')
CORRELATION_COLUMNS = ['metric', 'x', 'rho', 'low', 'high', 'n_models', 'n_resamples',
                       'n_skipped', 'note']


def _aligned_records(records: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
  """Every model's records indexed by id in the first model's order; ValueError unless all
  models hold the same ids once each and the same label per id."""
  if len(records) < 2:
    raise BadInput(f'comparing models needs at least 2 models, got {len(records)}')
  for name, frame in records.items():
    missing = {'id', 'label', 'prob', 'has_mask'} - set(frame.columns)
    if missing:
      raise BadInput(f'records of {name!r} lack columns {sorted(missing)}')
    duplicated = int(frame['id'].duplicated().sum())
    if duplicated:
      raise BadInput(f'records of {name!r} repeat {duplicated} ids')
  (first, reference), *others = records.items()
  ids = pd.Index(reference['id'].astype(str))
  for name, frame in others:
    unmatched = ids.symmetric_difference(pd.Index(frame['id'].astype(str)))
    if len(unmatched):
      raise BadInput(f'records of {first!r} and {name!r} cover different images: '
                     f'{len(unmatched)} ids are in only one of them')
  aligned = {m: f.assign(id=f['id'].astype(str)).set_index('id').loc[ids]
             for m, f in records.items()}
  labels = binary_labels(aligned[first]['label'])
  for name, frame in aligned.items():
    if frame['prob'].isna().any():
      raise BadInput(f'records of {name!r} have {int(frame["prob"].isna().sum())} images '
                     'without a probability')
    differ = int((frame['label'].to_numpy() != labels).sum())
    if differ:
      raise BadInput(f'records of {first!r} and {name!r} give {differ} images different labels')
  return aligned


def _mean_of(values: np.ndarray):
  """fn(idx): mean of the defined (non-NaN) values at idx; ValueError when none is."""
  def mean(idx):
    picked = values[idx]
    picked = picked[~np.isnan(picked)]
    if not picked.size:
      raise ValueError('no defined value in the resample')
    return float(picked.mean())
  return mean


def _auc_of(labels: np.ndarray, probs: np.ndarray):
  return lambda idx: roc_auc(labels[idx], probs[idx])


def _paired_rows(metric, boot: pd.DataFrame, tests: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
  models = boot[boot['b'] == ''].drop(columns='b').rename(columns={'a': 'model', 'point': 'value'})
  pairs = boot[boot['b'] != ''].rename(columns={'point': 'difference'}).drop(columns='n')
  pairs = pairs.merge(tests, on=['a', 'b'], validate='one_to_one')
  return models.assign(metric=metric), pairs.assign(metric=metric)


def compare_models(records: Mapping[str, pd.DataFrame], *, depth: Mapping[str, int],
                   metrics: Sequence[str], n_resamples: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> dict[str, pd.DataFrame]:
  """Paper tables comparing models whose per-image records cover the same images.

  ``records`` maps a model name to its per-image records (columns id, label, prob, has_mask and
  one column per localisation metric); ``depth`` maps each model to its number of weight
  layers; ``metrics`` names 'accuracy', 'roc_auc' (over every image, threshold 0.5 for
  accuracy) or record columns (localisation metrics, over the images with a mask in every
  model).  Returns:

  - 'models': metric, model, value, low, high, n, n_skipped: each model's value with its
    bootstrap CI.
  - 'paired': metric, a, b, difference (a - b), low, high, n_skipped, test, statistic, p,
    p_holm, n, note: paired bootstrap CI of the difference (one resampling of images shared by
    both models), a two-sided paired test (Wilcoxon signed-rank on per-image values, DeLong for
    ROC-AUC) and its Holm adjustment over every pair of that metric.
  - 'correlation': metric, x, rho, low, high, n_models, n_resamples, n_skipped, note: Spearman
    rho across models of x = 'depth' (fixed) or 'accuracy' (recomputed per resample) against
    the metric's model-level value, images resampled jointly across models (every image; a
    localisation mean uses the masked ones drawn).  rho, low, high are missing (NaN) where
    undefined, e.g. a metric equal across models, with a note.  Empty with fewer than 3 models.

  Raises ValueError when the models cover different ids (naming the models and the count of
  unmatched ids), disagree on a label, lack a column or a depth, or a metric is unknown.
  """
  if not metrics or len(set(metrics)) != len(metrics):
    raise BadInput(f'metrics must be non-empty and distinct, got {list(metrics)}')
  aligned = _aligned_records(records)
  names = list(aligned)
  missing = [m for m in names if m not in depth]
  if missing:
    raise BadInput(f'depth is missing for models {missing}')
  for metric in metrics:
    absent = [m for m in names if metric not in PAIRED_CLASSIFICATION and metric not in aligned[m]]
    if absent:
      raise BadInput(f'metric {metric!r} is neither {PAIRED_CLASSIFICATION} nor a records '
                     f'column of {absent}')
  labels = binary_labels(aligned[names[0]]['label']).astype(int)
  n = labels.size
  probs = {m: f['prob'].to_numpy(dtype=np.float64) for m, f in aligned.items()}
  correct = {m: ((p >= 0.5) == labels).astype(np.float64) for m, p in probs.items()}
  masked = np.logical_and.reduce([f['has_mask'].to_numpy(dtype=bool) for f in aligned.values()])
  kwargs = {'n_resamples': n_resamples, 'confidence': confidence, 'seed': seed}

  model_rows, pair_rows, model_values = [], [], {}
  for metric in metrics:
    if metric == 'accuracy':
      boot = statistics.paired_bootstrap(correct, **kwargs)
      tests = statistics.paired_wilcoxon(correct)
      model_values[metric] = {m: _mean_of(c) for m, c in correct.items()}
    elif metric == 'roc_auc':
      model_values[metric] = {m: _auc_of(labels, p) for m, p in probs.items()}
      boot = statistics.paired_bootstrap_fn(model_values[metric], n, **kwargs)
      tests = statistics.paired_delong(labels, probs)
    else:
      if not masked.any():
        raise BadInput(f'metric {metric!r}: no image has a mask in every model')
      values = {m: f[metric].to_numpy(dtype=np.float64) for m, f in aligned.items()}
      boot = statistics.paired_bootstrap({m: v[masked] for m, v in values.items()}, **kwargs)
      tests = statistics.paired_wilcoxon({m: v[masked] for m, v in values.items()})
      model_values[metric] = {m: _mean_of(np.where(masked, v, np.nan)) for m, v in values.items()}
    models, pairs = _paired_rows(metric, boot, tests)
    model_rows.append(models)
    pair_rows.append(pairs)

  correlation = []
  if len(names) >= 3:
    xs = {'depth': dict(depth), 'accuracy': {m: _mean_of(c) for m, c in correct.items()}}
    for metric, y in model_values.items():
      for x_name, x in xs.items():
        if x_name != metric:
          rho = statistics.spearman_bootstrap({m: x[m] for m in names}, y, n_items=n, **kwargs)
          correlation.append({'metric': metric, 'x': x_name, **rho})
  return {
      'models': pd.concat(model_rows, ignore_index=True)[
          ['metric', 'model', 'value', 'low', 'high', 'n', 'n_skipped']],
      'paired': pd.concat(pair_rows, ignore_index=True)[
          ['metric', 'a', 'b', 'difference', 'low', 'high', 'n_skipped', 'test', 'statistic', 'p',
           'p_holm', 'n', 'note']],
      'correlation': pd.DataFrame(correlation, columns=CORRELATION_COLUMNS),
  }
