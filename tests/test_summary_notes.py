"""The summary says what happened instead of dropping a block or printing 'nan': non-finite
probabilities, a class absent from the test split, resamples on which a metric is undefined."""

import numpy as np
import pandas as pd

from cam_jax import cams
from cam_jax.analysis import statistics, summary
from cam_jax.metrics import classification
from cam_jax.report import tables

N_RESAMPLES = 200


def _records(labels, probs):
  n = len(labels)
  return pd.DataFrame({'id': [str(i) for i in range(n)], 'label': labels, 'has_mask': False,
                       'prob': probs, 'flags': ''})


def test_nonfinite_probabilities_are_reported_not_dropped():
  rng = np.random.default_rng(0)
  labels = np.arange(40) % 2
  probs = rng.uniform(size=40)
  probs[[3, 7, 8]] = np.nan
  probs[5] = np.inf  # a diverged model
  table = summary.summarise(_records(labels, probs), n_resamples=N_RESAMPLES).set_index('metric')
  rows = table.loc[list(classification.CLASSIFICATION_METRICS)]
  assert rows['value'].isna().all() and (rows['n'] == 40).all()
  assert (rows['note'] == 'not computed: 4 of 40 probabilities are not finite (a diverged '
          'model?)').all()
  assert tables.cell(table.reset_index(), 'roc_auc') == 'n/a'


def test_a_metric_undefined_on_the_data_says_so():
  labels = np.zeros(30, int)  # no positive: ROC-AUC, PR-AUC and sensitivity are undefined
  probs = np.linspace(0.1, 0.9, 30)
  table = summary.summarise(_records(labels, probs), n_resamples=N_RESAMPLES).set_index('metric')
  for metric in ('roc_auc', 'pr_auc', 'sensitivity'):
    assert np.isnan(table.loc[metric, 'value'])
    assert table.loc[metric, 'note'] == 'undefined on these images'
  assert table.loc['specificity', 'value'] == np.mean(probs < 0.5)
  assert table.loc['specificity', 'note'] == '' and table.loc['specificity', 'n_skipped'] == 0


def test_skipped_resamples_are_counted_and_noted():
  labels = np.zeros(40, int)
  labels[0] = 1  # one positive: a resample misses it with probability (39/40)^40, about 0.36
  probs = np.linspace(0.0, 1.0, 40)
  table = summary.summarise(_records(labels, probs), n_resamples=N_RESAMPLES).set_index('metric')
  skipped = int(table.loc['roc_auc', 'n_skipped'])
  assert 0.25 * N_RESAMPLES < skipped < 0.5 * N_RESAMPLES
  assert table.loc['roc_auc', 'note'] == (f'{skipped} of {N_RESAMPLES} resamples skipped '
                                         '(undefined on them)')
  assert table.loc['accuracy', 'n_skipped'] == 0
  lines = tables.summary_notes({'m': table.reset_index()}, ['roc_auc', 'accuracy'])
  assert lines == [f'- m, ROC-AUC: {skipped} of {N_RESAMPLES} resamples skipped (undefined '
                   'on them)']


def test_format_ci_never_prints_nan():
  assert statistics.format_ci(np.nan, np.nan, np.nan) == 'n/a'
  assert statistics.format_ci(0.5, np.nan, np.nan) == '0.500 [CI n/a]'
  assert statistics.format_ci(0.5, 0.25, 0.75) == '0.500 [0.250, 0.750]'


def test_describe_target():
  assert cams.describe_target(1, 1) == 'the positive finding'
  assert cams.describe_target(-1, 1) == 'the negative finding'
  assert cams.describe_target(cams.PREDICTED, 1) == 'the predicted finding'
  assert cams.describe_target(-1, 3) == 'the predicted class'
  assert cams.describe_target(2, 3) == 'class 2'
