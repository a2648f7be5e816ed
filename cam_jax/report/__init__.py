"""The study report: ``report.md`` from per-image records, plus figures."""

from __future__ import annotations

import os

import pandas as pd

from cam_jax.report import figures, tables
from cam_jax.scoring import summary as summary_lib

BASELINE = 'random heat map'
OVERLAYS = 'overlays.png'


def write_report(workdir: str, records: pd.DataFrame, *, title: str, notes: list[str],
                 n_resamples: int = 2000, seed: int = 0) -> str:
  """Writes ``<workdir>/report.md`` from ``records`` (column ``model``; the baseline's rows have
  ``model == BASELINE``) and returns its text."""
  summaries = {m: summary_lib.summarise(r, n_resamples=n_resamples, seed=seed)
               for m, r in records.groupby('model', sort=False)}
  layers = records.groupby('model', sort=False)['layer'].first().to_dict()
  models = [m for m in summaries if m != BASELINE]
  lines = [f'# {title}', '', *notes, '',
           'Values are means (accuracy: share correct) with percentile-bootstrap 95% CIs over '
           f'images ({n_resamples} resamples).', '',
           '## Classification (test split)', '',
           tables.classification_table({m: summaries[m] for m in models}), '',
           '## Grad-CAM against the lesion masks (test images with a lesion)', '',
           tables.cam_table(summaries, layers), '',
           '`flagged` counts degenerate maps, which are scored, not dropped: `no_heat` (no pixel '
           '>= 0.1, EHR-AUC 0), `constant` (pointing game 0), `nonfinite` (replaced by zeros); '
           'the `flags` column of `records.csv` names them per image.', '']
  if BASELINE in summaries:
    base = summaries[BASELINE]
    lines += ['Above the random heat map (CIs not overlapping):', '']
    for m in models:
      verdict = {k: tables.beats_baseline(summaries[m], base, k)
                 for k in ('ehr_auc', 'pointing_game')}
      lines.append(f'- {m}: EHR-AUC {"yes" if verdict["ehr_auc"] else "no"}, '
                   f'pointing game {"yes" if verdict["pointing_game"] else "no"}')
    lines.append('')
  if os.path.exists(os.path.join(workdir, OVERLAYS)):
    lines += ['## Overlays', '', f'![Grad-CAM overlays]({OVERLAYS})', '']
  text = '\n'.join(lines)
  with open(os.path.join(workdir, 'report.md'), 'w') as f:
    f.write(text)
  return text


__all__ = ['BASELINE', 'OVERLAYS', 'figures', 'tables', 'write_report']
