"""The study report: ``report.md`` from per-image records (and the sanity and agreement tables),
plus figures, and its self-contained HTML twin ``report.html`` (``cam_jax.report.html``)."""

from __future__ import annotations

import os

import pandas as pd

from cam_jax.analysis import compare, statistics, summary as summary_lib
from cam_jax.metrics import classification, faithfulness
from cam_jax.report import figures, html, tables

BASELINE = 'random heat map'
REPORT, REPORT_HTML = 'report.md', 'report.html'
OVERLAYS, SANITY_PLOT, DEPTH_PLOT = 'overlays.png', 'sanity.png', 'metrics_by_depth.png'
CURVES_PLOT = 'deletion_insertion.png'
HEAT_METRICS = ('ehr_auc', 'pointing_game', 'pointing_game_weighted', 'relevance_mass',
                'relevance_mass_weighted', 'relevance_rank', 'top_k')
MASK_METRICS = ('iou', 'dice', 'iou_otsu', 'dice_otsu', 'iou_otsu_plain', 'dice_otsu_plain',
                'iou_tuned', 'dice_tuned', 'pixel_roc_auc', 'pixel_pr_auc')
COMPARED = ('accuracy', 'roc_auc', 'ehr_auc', 'pointing_game', 'relevance_mass', 'iou_otsu',
            'pixel_pr_auc', 'deletion_auc', 'insertion_auc')
BY_SIZE = ('ehr_auc', 'pointing_game', 'relevance_mass', 'pixel_pr_auc')


def _per_model(records: pd.DataFrame, column: str) -> dict:
  return (records.groupby('model', sort=False)[column].first().to_dict() if column in records
          else {})


def _summaries(records, n_resamples, seed):
  thresholds = _per_model(records, 'tuned_threshold')
  summaries, by_size = {}, {}
  for m, r in records.groupby('model', sort=False):
    t = thresholds.get(m)
    summaries[m] = summary_lib.summarise(r, n_resamples=n_resamples, seed=seed,
                                         tuned_threshold=None if pd.isna(t) else t)
    by_size[m] = summary_lib.by_lesion_size(r, n_resamples=n_resamples, seed=seed)
  return summaries, by_size


def _flagged(summaries) -> dict[str, str]:
  out = {}
  for m, s in summaries.items():
    row = s[s['metric'] == 'flagged']
    out[m] = str(int(row.iloc[0]['value'])) if len(row) else '0'
  return out


def _comparison(records, models, n_resamples, seed):
  depth = _per_model(records, 'depth')
  frames = {m: r for m, r in records.groupby('model', sort=False) if m in models}
  metrics = [m for m in COMPARED if m in ('accuracy', 'roc_auc') or
             all(m in f and f[m].notna().any() for f in frames.values())]
  if len(frames) < 2 or any(m not in depth for m in frames):
    return None
  return compare.compare_models(frames, depth={m: int(depth[m]) for m in frames},
                                metrics=metrics, n_resamples=n_resamples, seed=seed), metrics


def _with_blank(lines: list[str]) -> list[str]:
  return [*lines, ''] if lines else []


def _ci(n_resamples, seed):
  return lambda v: statistics.bootstrap_ci(v, n_resamples=n_resamples, seed=seed)


def write_report(workdir: str, records: pd.DataFrame, *, title: str, notes: list[str],
                 explained: str = 'the positive finding', n_resamples: int = 2000,
                 seed: int = 0, sanity: pd.DataFrame | None = None,
                 agreement: pd.DataFrame | None = None, fill: str = 'rise',
                 fill_check: pd.DataFrame | None = None) -> str:
  """Writes ``<workdir>/report.md``, its figures and ``report.html`` (the same report in one
  self-contained page, ``html.to_html``) and returns the Markdown.

  ``records``: per-image records with columns ``model`` (the baseline's rows have ``model ==
  BASELINE``), ``layer``, and optionally ``depth`` and ``tuned_threshold`` per model.
  ``sanity``: ``scoring.sanity.model_randomisation`` rows with a ``model`` column;
  ``agreement``: ``scoring.agreement.map_agreement`` rows with columns ``kind``, ``a``, ``b``.
  ``explained``: what the heat maps explain, in words (``cams.describe_target``). ``fill``:
  the deletion / insertion fill (``faithfulness.DELETION_FILLS``); ``fill_check``:
  ``scoring.fill_check`` records with a ``model`` column.
  """
  summaries, by_size = _summaries(records, n_resamples, seed)
  layers = _per_model(records, 'layer')
  thresholds = {m: f'{t:.2f}' for m, t in _per_model(records, 'tuned_threshold').items()
                if not pd.isna(t)}
  models = [m for m in summaries if m != BASELINE]
  ci = _ci(n_resamples, seed)
  lines = [f'# {title}', '', *notes, '',
           'Values are means (accuracy: share correct) with percentile-bootstrap 95% CIs over '
           f'images ({n_resamples} resamples).', '',
           '## Classification (test split)', '',
           tables.metric_table({m: summaries[m] for m in models},
                               classification.CLASSIFICATION_METRICS), '',
           *_with_blank(tables.summary_notes({m: summaries[m] for m in models},
                                             classification.CLASSIFICATION_METRICS)),
           '## Heat maps against the lesion masks (test images with a lesion)', '',
           'Heat-based metrics:', '',
           tables.metric_table(summaries, HEAT_METRICS, first='heat map',
                               extra={'layer': layers, 'flagged': _flagged(summaries)}), '',
           'Thresholded and rank metrics (the tuned threshold maximises mean IoU on the '
           'validation split, as CheXlocalize does):', '',
           tables.metric_table(summaries, MASK_METRICS, first='heat map',
                               extra={'tuned threshold': thresholds}), '',
           '`flagged` counts degenerate maps, which are scored, not dropped: `no_heat` (no pixel '
           '>= 0.1, EHR-AUC 0), `constant` (pointing game 0), `nonfinite` (replaced by zeros); '
           'the `flags` column of `records.csv` names them per image.', '']
  if BASELINE in summaries:
    base = summaries[BASELINE]
    lines += ['Above the random heat map (CIs not overlapping):', '']
    for m in models:
      verdict = ', '.join(
          f'{tables.title(k)} {"yes" if tables.beats_baseline(summaries[m], base, k) else "no"}'
          for k in ('ehr_auc', 'pointing_game', 'relevance_mass'))
      lines.append(f'- {m}: {verdict}')
    lines.append('')
  if any(len(t) for t in by_size.values()):
    lines += ['### By lesion size (terciles of the mask fraction over the lesion images)', '',
              tables.by_size_table(by_size, BY_SIZE), '']
  faithful = [m for m in summary_lib.FAITHFULNESS_METRICS
              if any((summaries[n]['metric'] == m).any() for n in models)]
  if faithful:
    lines += ['## Faithfulness', '',
              f'Deletion and insertion (RISE, Petsiuk et al. 2018), removed pixels filled with '
              f'{faithfulness.FILL_NOTES[fill]} (fill `{fill}`), on the test images with the '
              'finding (label 1), explaining the positive finding (`deletion_auc`, '
              '`insertion_auc`) and the predicted one (`_predicted`), each with its own heat '
              'map: a healthy image has no finding whose evidence could be removed, and a fill '
              'must not create the finding itself (the fill check below). ROAD (Rong et al. '
              f'2022, every test image, explaining {explained}): mean probability over the '
              'removal fractions.', '',
              tables.metric_table({m: summaries[m] for m in models}, faithful), '']
    curves = records[records['model'].isin(models)]
    if figures.curve_steps(curves):
      figures.deletion_insertion_curves(curves, os.path.join(workdir, CURVES_PLOT))
      lines += [f'![deletion and insertion curves]({CURVES_PLOT})', '']
  if fill_check is not None and len(fill_check):
    lines += ['### Fill check: do the fills create the finding?', '',
              'Change of the probability of the positive finding when pixels of the healthy '
              'test images are deleted in a random order (blobs of a random lattice, upsampled '
              'like a heat map), area over the fraction removed; about 0 when a fill carries no '
              'evidence of the finding, positive when it creates it:', '',
              tables.mean_ci_table(fill_check, ['model', 'fill'], ['change'], ci), '']
  comparison = _comparison(records, models, n_resamples, seed)
  if comparison:
    tables_, metrics = comparison
    lines += ['## Comparing the models (paired over the same images)', '',
              'Differences with paired-bootstrap 95% CIs; Wilcoxon signed-rank on per-image '
              'values (DeLong for ROC-AUC), Holm-adjusted over the pairs of each metric.', '',
              tables.paired_table(tables_['paired'], metrics), '']
    if len(tables_['correlation']):
      lines += ['Does depth (weight layers on the longest path) or accuracy go with better heat '
                'maps? Spearman rho across models, images resampled jointly:', '',
                tables.correlation_table(tables_['correlation']), '']
    figures.metrics_by_depth(tables_['models'], _per_model(records, 'depth'),
                             [m for m in metrics if m not in ('accuracy', 'roc_auc')],
                             os.path.join(workdir, DEPTH_PLOT))
    lines += [f'![metrics by depth]({DEPTH_PLOT})', '']
  if sanity is not None and len(sanity):
    lines += ['## Sanity check: model-parameter randomisation (Adebayo et al. 2018)', '',
              'Similarity of each model\'s heat maps before and after re-initialising its '
              f'parameter blocks, from the logits down ({", ".join(sanity["mode"].unique())}). '
              'Faithful explanations '
              'become dissimilar (low SSIM and Spearman) as more blocks are randomised.', '',
              tables.mean_ci_table(sanity[sanity['step'] == sanity.groupby('model')['step']
                                          .transform('max')],
                                   ['model', 'mode', 'block'], ['ssim', 'spearman'], ci), '']
    figures.sanity_curves(sanity, os.path.join(workdir, SANITY_PLOT))
    lines += [f'![sanity curves]({SANITY_PLOT})', '']
  if agreement is not None and len(agreement):
    lines += ['## Repeatability and reproducibility (Arun et al. 2021)', '',
              'Per-image similarity of heat maps of the same architecture trained with two '
              'seeds (repeatability) and of two architectures (reproducibility), on the lesion '
              'images:', '',
              tables.mean_ci_table(agreement[agreement['has_mask']], ['kind', 'a', 'b'],
                                   ['ssim', 'spearman'], ci), '']
  if os.path.exists(os.path.join(workdir, OVERLAYS)):
    lines += ['## Overlays', '', f'![Grad-CAM overlays]({OVERLAYS})', '']
  text = '\n'.join(lines)
  md_path = os.path.join(workdir, REPORT)
  page = html.to_html(text, workdir, source=md_path)  # before writing: a bad image writes neither
  with open(md_path, 'w') as f:
    f.write(text)
  with open(os.path.join(workdir, REPORT_HTML), 'w') as f:
    f.write(page)
  return text


__all__ = ['BASELINE', 'CURVES_PLOT', 'DEPTH_PLOT', 'OVERLAYS', 'REPORT', 'REPORT_HTML',
           'SANITY_PLOT', 'figures', 'html', 'tables', 'write_report']
