"""The trust verdict: per architecture and CAM method, can its heat maps be trusted on this data?

Criterion by criterion, each with its number, CI and threshold (``config.trust``):
- localisation beats chance: the excess of ``chance_metric`` over its analytic chance level
  (``analysis.depth.beats_chance``) has a CI above 0 and a Holm-adjusted p below ``alpha``;
- randomisation changes the maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
  2018): with every parameter block re-initialised, the mean SSIM to the original maps is at most
  ``max_randomised_ssim``;
- repeatable across seeds and reproducible across architectures (Arun et al., "Assessing the
  Trustworthiness of Saliency Maps for Localizing Abnormalities in Medical Imaging", Radiology:
  AI 2021): mean SSIM of seed 0 against seed 1 at least ``min_seed_ssim``, against the other
  depths of its family at least ``min_family_ssim``;
- faithful under deletion (Petsiuk et al., RISE, BMVC 2018): insertion AUC - deletion AUC on the
  positives has its hierarchical CI above 0 (removing the hottest pixels first lowers the
  finding faster than inserting them raises it back otherwise).
A criterion without data (no sanity rows, one seed) reads 'n/a': a model is trusted when it
passes all five, not trusted when it fails one, and otherwise said to fail none of those tested.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cam_jax.analysis import statistics
from cam_jax.report import tables

CRITERIA = ('beats chance', 'randomisation changes the maps', 'repeatable across seeds',
            'reproducible across depths', 'faithful under deletion')


def _judged(value, low, high, passed: bool, rule: str) -> tuple[str, bool]:
  return f'{statistics.format_ci(value, low, high)} {rule}: {"yes" if passed else "no"}', passed


def _mean_ci(values: np.ndarray, n_resamples: int, seed: int):
  return statistics.bootstrap_ci(values, n_resamples=n_resamples, seed=seed)


def verdict_rows(architectures: dict[str, tuple[str, int]], *, chance: pd.DataFrame,
                 faithful: pd.DataFrame | None, sanity: pd.DataFrame | None,
                 agreement: pd.DataFrame | None, trust, method: str, n_resamples: int,
                 seed: int) -> list[list[str]]:
  """Rows architecture, method, one cell per criterion, verdict.

  ``architectures``: name -> (family, depth); ``chance``: ``beats_chance`` rows of
  ``trust.chance_metric`` with ``p_holm``; ``faithful``: ``hierarchical_bootstrap`` rows of
  insertion - deletion; ``sanity``: rows of seed-0 models (column ``architecture``) at their last
  step; ``agreement``: ``kind, a_architecture, b_architecture, ssim`` rows of this method.
  """
  rows = []
  for name, (family, depth) in architectures.items():
    judged = []
    c = chance[(chance['family'] == family) & (chance['depth'] == depth)]
    if len(c):
      r = c.iloc[0]
      judged.append(_judged(r['excess'], r['low'], r['high'],
                            bool(r['low'] > 0 and r['p_holm'] < trust.alpha),
                            f'(p Holm {tables.p_text(r["p_holm"])}; > 0, p < {trust.alpha})'))
    else:
      judged.append(None)
    s = None if sanity is None else sanity[sanity['architecture'] == name]
    if s is not None and len(s):
      v = _mean_ci(s['ssim'].to_numpy(), n_resamples, seed)
      judged.append(_judged(*v, v[0] <= trust.max_randomised_ssim,
                            f'<= {trust.max_randomised_ssim}'))
    else:
      judged.append(None)
    for kind, threshold in (('repeatability', trust.min_seed_ssim),
                            ('reproducibility', trust.min_family_ssim)):
      a = None if agreement is None else agreement[
          (agreement['kind'] == kind) &
          ((agreement['a_architecture'] == name) | (agreement['b_architecture'] == name))]
      if a is not None and len(a):
        v = _mean_ci(a['ssim'].to_numpy(), n_resamples, seed)
        judged.append(_judged(*v, v[0] >= threshold, f'>= {threshold}'))
      else:
        judged.append(None)
    f = None if faithful is None else faithful[(faithful['family'] == family) &
                                              (faithful['depth'] == depth)]
    if f is not None and len(f):
      r = f.iloc[0]
      judged.append(_judged(r['value'], r['low'], r['high'], bool(r['low'] > 0), '> 0'))
    else:
      judged.append(None)
    tested = [j[1] for j in judged if j is not None]
    if not all(tested):
      verdict = 'not trusted'
    elif len(tested) == len(CRITERIA):
      verdict = '**trusted**'
    else:
      verdict = f'no failure in the {len(tested)} of {len(CRITERIA)} criteria tested'
    rows.append([f'{name} ({depth})', method, *(j[0] if j else 'n/a' for j in judged), verdict])
  return rows


def verdict_table(rows: list[list[str]]) -> str:
  return tables.markdown(['model (depth)', 'method', *CRITERIA, 'verdict'], rows)
