"""Markdown tables of the study: classification and CAM localisation, each value with its CI."""

from __future__ import annotations

import pandas as pd

from cam_jax.scoring.statistics import format_ci
from cam_jax.scoring.summary import LOCALISATION_METRICS

_TITLES = {'accuracy': 'accuracy', 'roc_auc': 'ROC-AUC', 'ehr_auc': 'EHR-AUC',
           'pointing_game': 'pointing game', 'iou': 'IoU@0.5', 'dice': 'Dice@0.5'}


def _cell(summary: pd.DataFrame, metric: str) -> str:
  row = summary[summary['metric'] == metric]
  if row.empty:
    return 'n/a'
  r = row.iloc[0]
  return format_ci(r['value'], r['low'], r['high'])


def _count(summary: pd.DataFrame, metric: str) -> int:
  row = summary[summary['metric'] == metric]
  return 0 if row.empty else int(row.iloc[0]['n'])


def _markdown(header: list[str], rows: list[list]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
  return '\n'.join(lines)


def classification_table(summaries: dict[str, pd.DataFrame]) -> str:
  """One row per model: accuracy and ROC-AUC over the whole test split."""
  rows = [[m, _cell(s, 'accuracy'), _cell(s, 'roc_auc'), _count(s, 'accuracy')]
          for m, s in summaries.items()]
  return _markdown(['model', _TITLES['accuracy'], _TITLES['roc_auc'], 'n'], rows)


def cam_table(summaries: dict[str, pd.DataFrame], layers: dict[str, str]) -> str:
  """One row per model (and the baseline): every localisation metric over images with a mask."""
  rows = []
  for m, s in summaries.items():
    flagged = s[s['metric'] == 'flagged']
    rows.append([m, layers.get(m, ''), *(_cell(s, k) for k in LOCALISATION_METRICS),
                 _count(s, 'ehr_auc'), int(flagged.iloc[0]['value']) if len(flagged) else 0])
  return _markdown(['heat map', 'layer', *(_TITLES[k] for k in LOCALISATION_METRICS), 'n',
                    'flagged'], rows)


def beats_baseline(summary: pd.DataFrame, baseline: pd.DataFrame, metric: str) -> bool:
  """True when the metric's CI lies wholly above the baseline's CI (non-overlapping)."""
  a, b = summary[summary['metric'] == metric], baseline[baseline['metric'] == metric]
  return bool(len(a) and len(b) and a.iloc[0]['low'] > b.iloc[0]['high'])
