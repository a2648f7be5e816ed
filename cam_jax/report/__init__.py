"""The study report: ``report.md`` from per-image records of every model (an architecture and a
seed) and the random baseline, plus the sanity, agreement and fill-check tables, with figures,
and its self-contained HTML twin ``report.html`` (``cam_jax.report.html``).

Order: the trust verdict (``verdict``); classification; localisation per family and depth with
the analytic chance level and the random heat map as references; excess over chance; the depth
trend, depth pairs and families compared (``analysis.depth``, Holm over every test of the
report); faithfulness; sanity; agreement; overlays; run metadata.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from cam_jax.analysis import depth as depth_lib, statistics, summary as summary_lib
from cam_jax.metrics import faithfulness
from cam_jax.report import figures, html, metadata, tables, verdict
from cam_jax.scoring import shortcut as shortcut_lib

BASELINE = 'random heat map'
REPORT, REPORT_HTML = 'report.md', 'report.html'
OVERLAYS = 'overlays_{case}.png'
SANITY_PLOT, DEPTH_PLOT = 'sanity.png', 'metrics_by_depth.png'
CURVES_PLOT = 'deletion_insertion.png'
CLASSIFICATION = ('roc_auc', 'accuracy')
LOCALISATION = ('ehr_auc', 'pointing_game', 'relevance_mass', 'iou_otsu', 'iou_tuned',
                'pixel_pr_auc')
TESTED = ('ehr_auc', 'pointing_game', 'relevance_mass', 'iou_otsu', 'pixel_pr_auc')
BINARY = ('pointing_game', 'accuracy')
CHANCE = ('pointing_game', 'relevance_mass', 'pixel_pr_auc')
FAITHFUL = ('deletion_auc', 'insertion_auc', 'deletion_auc_predicted', 'insertion_auc_predicted',
            'insertion_minus_deletion')


def _present(records, metrics):
  return [m for m in metrics if m in CLASSIFICATION or (m in records and records[m].notna().any())]


def _bootstrap(records, metrics, n_resamples, seed):
  frames = [depth_lib.hierarchical_bootstrap(records, m, n_resamples=n_resamples, seed=seed)
            for m in metrics]
  return pd.concat(frames, ignore_index=True) if frames else None


def _trend_records(records):
  """The records of the families with at least 2 depths and 3 models (a trend needs them)."""
  shape = records.drop_duplicates('model').groupby('family').agg(
      depths=('depth', 'nunique'), models=('model', 'nunique'))
  keep = shape.index[(shape['depths'] >= 2) & (shape['models'] >= 3)]
  return records[records['family'].isin(keep)]


def _tests(records, metrics, n_resamples, seed):
  """(trend, depth pairs, family pairs, chance) tables of one method's records."""
  kw = dict(n_resamples=n_resamples, seed=seed)
  trended = _trend_records(records)
  trend = [depth_lib.depth_trend(trended, m, **kw) for m in metrics] if len(trended) else []
  multi = records[records.groupby('family')['depth'].transform('nunique') > 1]
  pairs = [depth_lib.depth_pairs(multi, m, binary=m in BINARY, **kw) for m in metrics
           if len(multi)]
  across = ([depth_lib.family_pairs(records, m, binary=m in BINARY, **kw) for m in metrics]
            if records['family'].nunique() > 1 else [])
  chance = [depth_lib.beats_chance(records, m, **kw) for m in CHANCE if m in metrics]

  def joined(frames, columns):
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

  return (joined(trend, depth_lib.TREND_COLUMNS), joined(pairs, depth_lib.PAIR_COLUMNS),
          joined(across, depth_lib.FAMILY_PAIR_COLUMNS), joined(chance, depth_lib.CHANCE_COLUMNS))


def _reference_rows(baseline, metrics, n_resamples, seed):
  """The analytic chance level and the random heat map, as rows of a depth table."""
  lesion = baseline[baseline['has_mask']]
  chance = []
  for m in metrics:
    level = depth_lib.chance_level(m, lesion)
    chance.append('' if level is None else f'{np.nanmean(level):.3f}')
  rows = [['', 'chance (analytic, mean over lesion images)', *chance, '', len(lesion)]]
  if len(baseline):
    s = summary_lib.summarise(baseline, n_resamples=n_resamples, seed=seed)
    rows.append(['', f'{BASELINE} ({baseline["layer"].iloc[0]})',
                 *('' if m in CLASSIFICATION else tables.cell(s, m) for m in metrics), '',
                 len(lesion)])
  return rows


def _seed_points(records, metrics):
  rows = [records.groupby(['family', 'depth', 'seed'])[m].mean().rename('value').reset_index()
          .assign(metric=m) for m in metrics]
  return pd.concat(rows, ignore_index=True)


def _shortcut_table(shortcut: pd.DataFrame) -> pd.DataFrame:
  """Per (architecture, seed, method): ``scoring.shortcut.compare_shares`` of the model trained
  with the confounder against its control, with the columns ``tables.shortcut_table`` shows."""
  rows = []
  keys = ['architecture', 'seed', 'method']
  controls = {k: g for k, g in shortcut[shortcut['control']].groupby(keys)}
  for key, group in shortcut[~shortcut['control']].groupby(keys, sort=False):
    if key not in controls:
      continue
    c = shortcut_lib.compare_shares(group, controls[key])
    rows.append({**dict(zip(keys, key)), 'share': c['share_a'], 'share_low': c['low_a'],
                 'share_high': c['high_a'], 'control': c['share_b'], 'control_low': c['low_b'],
                 'control_high': c['high_b'], 'difference': c['difference'], 'low': c['low'],
                 'high': c['high'], 'p': c['p_mcnemar'], 'n': c['n_a']})
  return pd.DataFrame(rows)


def _ci(n_resamples, seed):
  return lambda v: statistics.bootstrap_ci(v, n_resamples=n_resamples, seed=seed)


def _with_architecture(table, runs: dict[str, str], columns=('model',)):
  """``table`` with ``<column>_architecture`` (or ``architecture`` for 'model') per column."""
  out = table.copy()
  for c in columns:
    out['architecture' if c == 'model' else f'{c}_architecture'] = out[c].map(runs)
  return out


def write_report(workdir: str, records: pd.DataFrame, *, config, title: str, notes: list[str],
                 explained: str = 'the positive finding', sanity: pd.DataFrame | None = None,
                 agreement: pd.DataFrame | None = None,
                 fill_check: pd.DataFrame | None = None,
                 shortcut: pd.DataFrame | None = None, overlays: dict[str, str] | None = None,
                 cells_run: dict[str, dict] | None = None) -> str:
  """Writes ``<workdir>/report.md``, its figures and ``report.html`` and returns the Markdown.

  ``records``: per-image records of every model (columns ``model`` (one trained model),
  ``architecture, family, depth, seed, method, layer`` and the metrics), and the baseline's rows
  (``model == BASELINE``). ``sanity``: ``scoring.sanity`` rows with ``model, method``;
  ``agreement``: ``scoring.agreement.compare_maps`` rows with ``kind, method, a, b``;
  ``fill_check``: ``scoring.fill_check`` rows with ``model``; ``shortcut``:
  ``scoring.shortcut.shortcut_records`` rows with ``model, architecture, seed, control, method``
  (the controls trained without the confounder); ``overlays``: case -> image path
  relative to ``workdir``; ``cells_run``: cell -> its ``seconds`` and ``devices``.
  ``config``: the study's (its ``score`` sets the resampling, ``trust`` the verdict's
  thresholds).
  """
  n_resamples, seed = config.score.n_resamples, config.score.seed
  baseline = records[records['model'] == BASELINE]
  runs = records[records['model'] != BASELINE].copy()
  runs['insertion_minus_deletion'] = (runs.get('insertion_auc', np.nan) -
                                      runs.get('deletion_auc', np.nan))
  runs['depth'] = runs['depth'].astype(int)
  archs = runs.drop_duplicates('architecture').sort_values(['family', 'depth'])
  names = {(r['family'], int(r['depth'])): r['architecture'] for _, r in archs.iterrows()}
  arch_of = dict(zip(runs['model'], runs['architecture']))
  methods = list(runs['method'].unique())
  localisation = _present(runs, LOCALISATION)
  tested = _present(runs, TESTED)
  per_method = {m: runs[runs['method'] == m] for m in methods}
  values = {m: _bootstrap(r, localisation, n_resamples, seed) for m, r in per_method.items()}
  classified = _bootstrap(per_method[methods[0]], CLASSIFICATION, n_resamples, seed)
  tests = {m: _tests(r, tested + (['roc_auc'] if m == methods[0] else []), n_resamples, seed)
           for m, r in per_method.items()}
  confounded = _shortcut_table(shortcut) if shortcut is not None and len(shortcut) else None
  flat = depth_lib.holm_all([t for m in methods for t in tests[m]] +
                            ([] if confounded is None else [confounded]))
  tests = {m: tuple(flat[4 * i:4 * i + 4]) for i, m in enumerate(methods)}
  confounded = None if confounded is None else flat[-1]
  n_tests = int(sum(t['p'].notna().sum() for t in flat))
  faithful_metrics = _present(runs, FAITHFUL)
  faithful = {m: _bootstrap(r[r['label'] == 1], faithful_metrics, n_resamples, seed)
              for m, r in per_method.items()} if faithful_metrics else {}
  ci = _ci(n_resamples, seed)
  last_sanity = None
  if sanity is not None and len(sanity):
    last_sanity = _with_architecture(
        sanity[sanity['step'] ==
               sanity.groupby(['model', 'method', 'mode'])['step'].transform('max')], arch_of)
    cascading = last_sanity[last_sanity['mode'] == 'cascading']
  pairs = (_with_architecture(agreement, arch_of, ('a', 'b'))
           if agreement is not None and len(agreement) else None)

  lines = [f'# {title}', '', *notes, '',
           'Values per model (an architecture at one depth) are means over its seeds of each '
           "seed's mean over the test images, with hierarchical percentile-bootstrap 95% CIs "
           f'({n_resamples} resamples: images, shared by every model, then seeds within the '
           'model; Saravanan et al. 2020), so each interval reflects image and seed variance. '
           f'Every p-value of the report is Holm-adjusted over all {n_tests} tests together.', '',
           '## Trust verdict', '',
           'Can the heat maps of each model be trusted on these data? Each criterion with its '
           'number, 95% CI and threshold (`config.trust`); `n/a`: no data for it, and no '
           'verdict of trusted without all five.',
           '']
  rows = []
  for m in methods:
    t = config.trust
    chance = tests[m][3]
    rows += verdict.verdict_rows(
        {a: (f, d) for (f, d), a in names.items()},
        chance=chance[chance['metric'] == t.chance_metric],
        faithful=(None if m not in faithful or faithful[m] is None else
                  faithful[m][faithful[m]['metric'] == 'insertion_minus_deletion']),
        sanity=None if last_sanity is None else cascading[cascading['method'] == m],
        agreement=None if pairs is None else pairs[pairs['method'] == m],
        trust=t, method=m, n_resamples=n_resamples, seed=seed)
  lines += [verdict.verdict_table(rows), '',
            f'Beats chance: {tables.title(config.trust.chance_metric)} above its analytic '
            'chance level (the mask fraction for the pointing game). Randomisation: mean SSIM '
            'of seed 0\'s maps to those with every parameter block re-initialised (Adebayo et '
            'al. 2018). Repeatable / reproducible: mean SSIM of seed 0 against seed 1, and '
            'against the other depths of its family at seed 0 (Arun et al. 2021), on the lesion '
            'images. Faithful: insertion - deletion AUC on the positives (RISE, Petsiuk et al. '
            '2018).', '',
            '## Classification (test split)', '',
            tables.depth_table(classified, CLASSIFICATION, names), '']
  references = _reference_rows(baseline, localisation, n_resamples, seed)  # the same per method
  for m in methods:
    lines += [f'## Heat maps against the lesion masks: {m}', '',
              f'On the {int(runs.drop_duplicates("id")["has_mask"].sum())} test images with a '
              f'lesion; layer: {", ".join(sorted(runs["layer"].unique()))}. Chance: an '
              'uninformative map\'s expected value where one exists analytically (the mask '
              'fraction for the pointing game and relevance mass, the lesion prevalence for '
              f'pixel PR-AUC); the {BASELINE} (a uniform random {config.score.baseline_grid}x'
              f'{config.score.baseline_grid} lattice, upsampled like a CAM) is a second '
              'reference: its maxima sit on lattice points, so its pointing game can fall '
              'below chance.', '',
              tables.depth_table(values[m], localisation, names, references), '']
    trend, depth_pairs, across, chance = tests[m]
    if len(chance):
      lines += ['Above chance? The excess of each model over the analytic chance level, with '
                'a one-sample t-test of the per-image excess of the seed-mean map (the question '
                'is about these trained models on these images):', '',
                tables.chance_table(chance, names), '']
    if len(trend):
      lines += ['### Does it change with depth? (within each family)', '',
                'Slope of the model-level value on depth (OLS across the family\'s models, '
                'every seed a model) with its hierarchical bootstrap CI, and the t-test of the '
                'slope (null: no depth effect; the unit is the trained model, not the image):',
                '', tables.trend_table(trend), '']
    if len(depth_pairs):
      lines += ['Every two depths of a family, paired over the same images (Wilcoxon '
                'signed-rank on the seed-mean values; exact sign test for the pointing game; '
                'ROC-AUC: CI only). These per-image tests condition on the trained models: they '
                'say whether these models differ on these images, not whether depth does:', '',
                tables.depth_pairs_table(depth_pairs, names), '']
    if len(across):
      lines += ['### Families compared at matched depth rank', '',
                tables.family_pairs_table(across, names), '']
  figures.metrics_by_depth(values[methods[0]], _seed_points(per_method[methods[0]], tested),
                           tested, os.path.join(workdir, DEPTH_PLOT))
  lines += [f'![{methods[0]}: each metric against depth per family, seeds as dots]'
            f'({DEPTH_PLOT})', '']
  if faithful:
    fill = config.score.fill
    lines += ['## Faithfulness', '',
              f'Deletion and insertion (RISE, Petsiuk et al. 2018) on the test images with the '
              f'finding, removed pixels filled with {faithfulness.FILL_NOTES[fill]} (fill '
              f'`{fill}`), explaining the positive finding and the predicted one (`predicted`), '
              'each with its own heat map. The fill must not create the finding itself: the '
              'fill check below measures that on the healthy images.', '']
    for m in methods:
      lines += [f'{m}:', '', tables.depth_table(faithful[m], faithful_metrics, names), '']
    shown = per_method[methods[0]]
    shown = shown[shown['seed'] == 0].assign(model=shown['architecture'])
    if figures.curve_steps(shown):
      figures.deletion_insertion_curves(shown, os.path.join(workdir, CURVES_PLOT),
                                        n_resamples=min(n_resamples, 1000), seed=seed)
      lines += [f'![{methods[0]} deletion and insertion curves, seed 0]({CURVES_PLOT})', '']
  if fill_check is not None and len(fill_check):
    lines += ['### Fill check: do the fills create the finding?', '',
              'Change of the probability of the positive finding when pixels of the healthy '
              'test images are deleted in a random order (blobs of a random lattice, upsampled '
              'like a heat map), area over the fraction removed; about 0 when a fill carries no '
              'evidence of the finding, positive when it creates it:', '',
              tables.mean_ci_table(fill_check, ['model', 'fill'], ['change'], ci), '']
  if last_sanity is not None:
    lines += ['## Sanity check: model-parameter randomisation (Adebayo et al. 2018)', '',
              'Similarity of seed 0\'s heat maps before and after re-initialising its parameter '
              'blocks, on the first '
              f'{config.sanity.n_images} test images: `cascading` from the logits down, here '
              'with every block randomised; `independent` one block at a time, here the first '
              'block alone. Faithful explanations become dissimilar (low SSIM and Spearman).',
              '', tables.mean_ci_table(last_sanity, ['model', 'method', 'mode', 'block'],
                                       ['ssim', 'spearman'], ci), '']
    figures.sanity_curves(sanity[sanity['method'] == methods[0]],
                          os.path.join(workdir, SANITY_PLOT))
    lines += [f'![{methods[0]} sanity curves]({SANITY_PLOT})', '']
  if pairs is not None:
    lines += ['## Repeatability and reproducibility (Arun et al. 2021)', '',
              'Per-image similarity of heat maps, on the test images with a lesion: the same '
              'architecture trained with seeds 0 and 1 (repeatability), two depths of one '
              'family at seed 0 (reproducibility):', '',
              tables.mean_ci_table(pairs, ['kind', 'method', 'a', 'b'], ['ssim', 'spearman'],
                                   ci), '']
  if confounded is not None:
    lines += ['## Shortcut: heat on the tube or on the lesion?', '',
              'The phantom draws a chest-drain tube with the finding more often than without '
              f'it (config.data: tube_rate_pos {config.data.tube_rate_pos}, tube_rate_neg '
              f'{config.data.tube_rate_neg}); each model\'s control is trained on the same '
              'images without any tube. Both are scored on the test images with a lesion and a '
              'tube: the share whose mean heat per tube pixel (outside the lesion) exceeds the '
              'mean heat per lesion pixel, with Wilson 95% CIs, the difference with Newcombe\'s '
              'CI and the exact McNemar test, paired over the same images (Zech et al. 2018, '
              'Oakden-Rayner et al. 2020: models learn such confounders).', '',
              tables.shortcut_table(confounded), '']
  if overlays:
    lines += ['## Overlays', '',
              f'{methods[0]} heat maps of seed 0 of every model over test images with a lesion '
              '(white: the mask contour): the images with the highest and the lowest mean '
              'EHR-AUC over all models, and a random draw.', '']
    for case, path in overlays.items():
      lines += [f'![{case} cases]({path})', '']
  lines += metadata.lines(json.dumps(json.loads(config.to_json()), indent=1, sort_keys=True),
                          cells_run or {})
  text = '\n'.join(lines)
  md_path = os.path.join(workdir, REPORT)
  page = html.to_html(text, workdir, source=md_path)  # before writing: a bad image writes neither
  with open(md_path, 'w') as f:
    f.write(text)
  with open(os.path.join(workdir, REPORT_HTML), 'w') as f:
    f.write(page)
  return text


__all__ = ['BASELINE', 'CURVES_PLOT', 'DEPTH_PLOT', 'OVERLAYS', 'REPORT', 'REPORT_HTML',
           'SANITY_PLOT', 'figures', 'html', 'metadata', 'tables', 'verdict', 'write_report']
