"""Markdown tables of a study: each value with its CI, one row per model (or pair, or stratum)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from cam_jax.analysis.statistics import format_ci

TITLES = {
    'accuracy': 'accuracy', 'roc_auc': 'ROC-AUC', 'pr_auc': 'PR-AUC', 'f1': 'F1',
    'sensitivity': 'sensitivity', 'specificity': 'specificity',
    'ehr_auc': 'EHR-AUC', 'pointing_game': 'pointing game',
    'pointing_game_weighted': 'pointing game (size-weighted)',
    'relevance_mass': 'relevance mass', 'relevance_mass_weighted': 'relevance mass (weighted)',
    'relevance_rank': 'relevance rank', 'top_k': 'top-k', 'iou': 'IoU@0.5', 'dice': 'Dice@0.5',
    'iou_otsu': 'IoU (Otsu, CheXlocalize)', 'dice_otsu': 'Dice (Otsu, CheXlocalize)',
    'iou_otsu_plain': 'IoU (Otsu, plain)', 'dice_otsu_plain': 'Dice (Otsu, plain)',
    'iou_tuned': 'IoU (tuned)',
    'dice_tuned': 'Dice (tuned)', 'pixel_roc_auc': 'pixel ROC-AUC',
    'pixel_pr_auc': 'pixel PR-AUC', 'deletion_auc': 'deletion AUC (lower better)',
    'insertion_auc': 'insertion AUC', 'road_morf': 'ROAD MoRF (lower better)',
    'road_lerf': 'ROAD LeRF', 'ssim': 'SSIM', 'spearman': 'Spearman',
    'deletion_auc_predicted': 'deletion AUC, predicted (lower better)',
    'insertion_auc_predicted': 'insertion AUC, predicted',
    'insertion_minus_deletion': 'insertion - deletion AUC',
}


def title(metric: str) -> str:
  return TITLES.get(metric, metric)


def cell(summary: pd.DataFrame, metric: str) -> str:
  """'value [low, high]' of ``metric`` in a summary table, 'n/a' when absent."""
  row = summary[summary['metric'] == metric]
  if row.empty:
    return 'n/a'
  r = row.iloc[0]
  return format_ci(r['value'], r['low'], r['high'])


def count(summary: pd.DataFrame, metric: str) -> int:
  row = summary[summary['metric'] == metric]
  return 0 if row.empty else int(row.iloc[0]['n'])


def markdown(header: Sequence[str], rows: list[list]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
  return '\n'.join(lines)


def metric_table(summaries: dict[str, pd.DataFrame], metrics: Sequence[str], *,
                 first: str = 'model', extra: dict[str, dict[str, str]] | None = None) -> str:
  """One row per model: ``metrics`` with CIs, then ``n`` (of the first metric), then ``extra``
  columns (column title -> model -> text). Metrics no model has are left out."""
  metrics = [m for m in metrics if any((s['metric'] == m).any() for s in summaries.values())]
  extra = extra or {}
  rows = [[name, *(cell(s, m) for m in metrics), count(s, metrics[0]) if metrics else 0,
           *(column.get(name, '') for column in extra.values())]
          for name, s in summaries.items()]
  return markdown([first, *map(title, metrics), 'n', *extra], rows)


def summary_notes(summaries: dict[str, pd.DataFrame], metrics: Sequence[str]) -> list[str]:
  """'- model, metric: note' for each of ``metrics`` whose summary row carries a note (skipped
  resamples, an undefined value and why)."""
  lines = []
  for name, s in summaries.items():
    for _, r in s[s['metric'].isin(metrics)].iterrows():
      if isinstance(r.get('note'), str) and r['note']:
        lines.append(f'- {name}, {title(r["metric"])}: {r["note"]}')
  return lines


def beats_baseline(summary: pd.DataFrame, baseline: pd.DataFrame, metric: str) -> bool:
  """True when the metric's CI lies wholly above the baseline's CI (non-overlapping)."""
  a, b = summary[summary['metric'] == metric], baseline[baseline['metric'] == metric]
  return bool(len(a) and len(b) and a.iloc[0]['low'] > b.iloc[0]['high'])


def by_size_table(by_size: dict[str, pd.DataFrame], metrics: Sequence[str]) -> str:
  """Rows model x lesion-size tercile (with its mask-fraction range): ``metrics`` with CIs."""
  rows = []
  for name, table in by_size.items():
    for stratum, group in table.groupby('stratum', sort=False):
      span = f'{group["fraction_low"].iloc[0]:.3f}-{group["fraction_high"].iloc[0]:.3f}'
      rows.append([name, stratum, span, *(cell(group, m) for m in metrics),
                   count(group, metrics[0])])
  return markdown(['model', 'lesion size', 'mask fraction', *map(title, metrics), 'n'], rows)


def p_text(p) -> str:
  return 'n/a' if pd.isna(p) else ('< 1e-4' if p < 1e-4 else f'{p:.4f}')


def mean_ci_table(frame: pd.DataFrame, by: Sequence[str], values: Sequence[str],
                  ci: Callable) -> str:
  """Rows grouped by ``by``: the mean of each ``values`` column with ``ci(values) -> (point,
  low, high)`` and the group size."""
  rows = []
  for key, group in frame.groupby(list(by), sort=False):
    key = key if isinstance(key, tuple) else (key,)
    rows.append([*key, *(format_ci(*ci(group[v].to_numpy())) for v in values), len(group)])
  return markdown([*by, *map(title, values), 'n'], rows)



def _named(key, names: dict) -> str:
  """'vgg_tiny_2 (11)' for a (family, depth) key, via ``names``: (family, depth) -> name."""
  return f'{names.get(key, key[0])} ({key[1]})'


def depth_table(values: pd.DataFrame, metrics: Sequence[str], names: dict,
                extra_rows: Sequence[list] = ()) -> str:
  """Rows (family, depth) of ``analysis.depth.hierarchical_bootstrap`` tables concatenated over
  ``metrics``: each value with its CI over seeds and images, then seeds and images (of the first
  metric); ``extra_rows`` (reference rows) follow."""
  metrics = [m for m in metrics if (values['metric'] == m).any()]
  rows = []
  for key, group in values.groupby(['family', 'depth'], sort=True):
    by = group.set_index('metric')
    first = by.loc[metrics[0]]
    rows.append([key[0], _named(key, names),
                 *(format_ci(*by.loc[m, ['value', 'low', 'high']]) if m in by.index else 'n/a'
                   for m in metrics), int(first['n_seeds']), int(first['n_images'])])
  rows += [list(r) for r in extra_rows]
  return markdown(['family', 'model (depth)', *map(title, metrics), 'seeds', 'images'], rows)


def trend_table(trend: pd.DataFrame) -> str:
  """``analysis.depth.depth_trend`` rows with ``p_holm``: slope per layer with its CI, rho, p."""
  rows = [[r['family'], title(r['metric']), format_ci(r['slope'], r['low'], r['high'], digits=4),
           'n/a' if pd.isna(r['rho']) else f'{r["rho"]:.2f}', r['test'], p_text(r['p']),
           p_text(r['p_holm']), int(r['n_models'])] for _, r in trend.iterrows()]
  return markdown(['family', 'metric', 'slope per layer [95% CI]', 'Spearman rho', 'test', 'p',
                   'p (Holm)', 'models'], rows)


_TESTED = ['difference [95% CI]', 'test', 'p', 'p (Holm)', 'images']


def _tested(r) -> list:
  """The difference with its CI, the test, p, Holm's p and the images of a comparison row."""
  return [format_ci(r['difference'], r['low'], r['high']), r['test'], p_text(r['p']),
          p_text(r['p_holm']), int(r['n'])]


def depth_pairs_table(pairs: pd.DataFrame, names: dict) -> str:
  """``analysis.depth.depth_pairs`` rows: deeper - shallower per family and metric."""
  rows = [[r['family'], title(r['metric']), f'{_named((r["family"], r["deeper"]), names)} - '
           f'{_named((r["family"], r["shallower"]), names)}', *_tested(r)]
          for _, r in pairs.iterrows()]
  return markdown(['family', 'metric', 'deeper - shallower', *_TESTED], rows)


def family_pairs_table(pairs: pd.DataFrame, names: dict) -> str:
  """``analysis.depth.family_pairs`` rows: family a - family b at matched depth rank."""
  rows = [[title(r['metric']), int(r['depth_index']) + 1,
           f'{_named((r["family_a"], r["depth_a"]), names)} - '
           f'{_named((r["family_b"], r["depth_b"]), names)}', *_tested(r)]
          for _, r in pairs.iterrows()]
  return markdown(['metric', 'depth rank', 'a - b', *_TESTED], rows)


def chance_table(chance: pd.DataFrame, names: dict) -> str:
  """``analysis.depth.beats_chance`` rows: the excess over the analytic chance level."""
  rows = [[r['family'], _named((r['family'], r['depth']), names), title(r['metric']),
           format_ci(r['excess'], r['low'], r['high']), r['test'], p_text(r['p']),
           p_text(r['p_holm']), int(r['n_images'])] for _, r in chance.iterrows()]
  return markdown(['family', 'model (depth)', 'metric', 'excess over chance [95% CI]', 'test',
                   'p', 'p (Holm)', 'images'], rows)


def shortcut_table(table: pd.DataFrame) -> str:
  """Rows of the report's shortcut comparison: each share with its CI, the difference, p."""
  rows = [[r['architecture'], int(r['seed']), r['method'],
           format_ci(r['share'], r['share_low'], r['share_high']),
           format_ci(r['control'], r['control_low'], r['control_high']),
           format_ci(r['difference'], r['low'], r['high']), p_text(r['p']), p_text(r['p_holm']),
           int(r['n'])] for _, r in table.iterrows()]
  return markdown(['model', 'seed', 'method', 'heat more on the tube: trained with tubes',
                   'control (no tubes)', 'difference [95% CI]', 'p (McNemar)', 'p (Holm)',
                   'images'], rows)
