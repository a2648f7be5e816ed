"""cam_jax.analysis.depth against independent references: scipy's linregress, spearmanr,
binomtest and wilcoxon, a brute-force itertools enumeration, the plain paired bootstrap of
analysis.statistics, a Monte-Carlo of random heat maps through the localisation kernel."""

import itertools

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp_stats

from cam_jax.analysis import depth, statistics
from cam_jax.core.errors import BadInput
from cam_jax.metrics.classification import roc_auc
from cam_jax.metrics.localisation import localisation_metrics

FAMILIES = {'vgg': (11, 13, 16), 'resnet': (18, 34, 50)}


def _records(families=None, seeds=2, n=40, seed=0, spread=0.0, effect=None):
  """Per-image records: a shared image effect, per-image noise, seed s offset by
  ``spread * (s - mean seed)`` and ``effect(depth)`` added to every image of a model."""
  families = families or FAMILIES
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  labels[:2] = (0, 1)
  has_mask = rng.random(n) < 0.7
  fraction = np.where(has_mask, rng.uniform(0.01, 0.3, n), np.nan)
  image = rng.normal(0.5, 0.2, n)
  rows = []
  for family, depths in families.items():
    for d in depths:
      for s in range(seeds):
        offset = spread * (s - (seeds - 1) / 2) + (effect(d) if effect else 0.0)
        ehr = image + offset + rng.normal(0, 0.1, n)
        rows.append(pd.DataFrame({
            'model': f'{family}_{d} seed {s}', 'family': family, 'depth': d, 'seed': s,
            'id': [f'img{i}' for i in range(n)], 'label': labels,
            'prob': np.clip(0.3 * labels + rng.random(n) * 0.7, 0, 1), 'has_mask': has_mask,
            'mask_fraction': fraction, 'ehr_auc': np.where(has_mask, ehr, np.nan),
            'pointing_game': np.where(has_mask, (rng.random(n) < 0.5).astype(float), np.nan)}))
  return pd.concat(rows, ignore_index=True)


def test_value_is_the_mean_over_seeds_of_model_means_over_defined_images():
  records = _records()
  table = depth.hierarchical_bootstrap(records, 'ehr_auc', n_resamples=50)
  model_means = records.groupby(['family', 'depth', 'model'])['ehr_auc'].mean()
  expected = model_means.groupby(['family', 'depth']).mean()
  got = table.set_index(['family', 'depth'])['value']
  np.testing.assert_allclose(got.loc[expected.index], expected, rtol=1e-12)
  assert (table['n_seeds'] == 2).all()
  assert (table['n_images'] == records.groupby('model')['ehr_auc'].count().iloc[0]).all()
  assert (table['low'] < table['value']).all() and (table['value'] < table['high']).all()


def test_one_seed_per_depth_is_the_plain_paired_image_bootstrap():
  records = _records(families={'vgg': (11, 13, 16)}, seeds=1).drop(columns='ehr_auc')
  records['ehr_auc'] = np.random.default_rng(3).random(len(records))  # defined everywhere
  samples = {d: g['ehr_auc'].to_numpy() for d, g in records.groupby('depth')}
  plain = statistics.paired_bootstrap(samples, n_resamples=300, seed=5)
  table = depth.hierarchical_bootstrap(records, 'ehr_auc', n_resamples=300, seed=5)
  singles = plain[plain['b'] == '']
  np.testing.assert_allclose(table[['value', 'low', 'high']], singles[['point', 'low', 'high']],
                             rtol=1e-12)
  pairs = depth.depth_pairs(records, 'ehr_auc', binary=False, n_resamples=300, seed=5)
  plain_pairs = plain[plain['b'] != ''].set_index(['a', 'b'])  # a = shallower, a - b
  for _, row in pairs.iterrows():
    ref = plain_pairs.loc[(row['shallower'], row['deeper'])]
    np.testing.assert_allclose([row['difference'], row['low'], row['high']],
                               [-ref['point'], -ref['high'], -ref['low']], rtol=1e-10)


def test_one_seed_roc_auc_is_the_plain_paired_bootstrap_of_roc_auc():
  records = _records(families={'vgg': (11, 13, 16)}, seeds=1, n=30)
  records['prob'] = records['prob'].round(1)  # ties, within and across classes
  by_depth = {d: g for d, g in records.groupby('depth')}
  labels = by_depth[11]['label'].to_numpy()
  quantities = {d: (lambda p: lambda idx: roc_auc(labels[idx], p[idx]))(g['prob'].to_numpy())
                for d, g in by_depth.items()}
  plain = statistics.paired_bootstrap_fn(quantities, labels.size, n_resamples=200, seed=2)
  table = depth.hierarchical_bootstrap(records, 'roc_auc', n_resamples=200, seed=2)
  singles = plain[plain['b'] == '']
  np.testing.assert_allclose(table[['value', 'low', 'high']], singles[['point', 'low', 'high']],
                             rtol=1e-12)
  assert (table['n_skipped'] == singles['n_skipped'].to_numpy()).all()


def test_seed_variance_widens_the_interval():
  def width(spread):
    table = depth.hierarchical_bootstrap(_records(spread=spread, seed=1), 'ehr_auc',
                                         n_resamples=300)
    return (table['high'] - table['low']).to_numpy()

  calm, noisy = width(0.0), width(1.0)
  # images only: sd of the mean ~ 0.22 / sqrt(28) ~ 0.04, width ~ 0.16; seeds at -0.5 and +0.5
  # resample to a mean of -0.5, 0 or 0.5 with probability 1/4, 1/2, 1/4: width ~ 1
  assert (calm < 0.3).all() and (noisy > 0.8).all(), (calm, noisy)


def test_trend_t_test_is_linregress_on_model_means():
  records = _records(effect=lambda d: 0.004 * d, seed=4)
  table = depth.depth_trend(records, 'ehr_auc', n_resamples=200).set_index('family')
  means = records.groupby(['family', 'model', 'depth'])['ehr_auc'].mean().reset_index()
  for family, group in means.groupby('family'):
    ref = sp_stats.linregress(group['depth'], group['ehr_auc'])
    row = table.loc[family]
    np.testing.assert_allclose([row['slope'], row['t'], row['p']],
                               [ref.slope, ref.slope / ref.stderr, ref.pvalue], rtol=1e-9)
    assert row['df'] == len(group) - 2 and row['n_models'] == 6 and row['n_depths'] == 3
    assert row['rho'] == pytest.approx(sp_stats.spearmanr(group['depth'], group['ehr_auc'])[0])
    assert row['low'] < row['slope'] < row['high']


def test_permutation_p_of_a_perfectly_monotone_family_is_2_over_90():
  records = _records(families={'vgg': (11, 13, 15)})
  rank = {m: i for i, m in enumerate(sorted(records['model'].unique()))}  # depth, then seed
  records['ehr_auc'] = records['model'].map(rank) + 0.0  # 6 distinct values, monotone in depth
  row = depth.depth_trend(records, 'ehr_auc', test='permutation', n_resamples=20).iloc[0]
  assert row['p'] == 2 / 90
  assert row['note'] == 'exact over 90 assignments' and np.isnan(row['t'])


def test_permutation_p_matches_brute_force_enumeration():
  records = _records(families={'vgg': (11, 13, 19)}, seed=7, spread=0.05,
                     effect=lambda d: 0.01 * d)
  row = depth.depth_trend(records, 'ehr_auc', test='permutation', n_resamples=20).iloc[0]
  means = records.groupby(['model', 'depth'])['ehr_auc'].mean().reset_index()
  y, x = means['ehr_auc'].to_numpy(), means['depth'].to_numpy()
  observed = abs(np.polyfit(x, y, 1)[0])
  arrangements = set(itertools.permutations(x.tolist()))
  assert len(arrangements) == 90
  slopes = [abs(np.polyfit(np.array(a, float), y, 1)[0]) for a in arrangements]
  expected = np.mean([s >= observed - 1e-9 for s in slopes])
  assert row['p'] == pytest.approx(expected, abs=1e-12)
  assert row['p'] >= 1 / 90


def test_binary_depth_pairs_use_the_exact_sign_test_mcnemar_with_one_seed():
  records = _records(families={'vgg': (11, 16)}, seeds=1, n=80)
  hits = records.pivot(index='id', columns='depth', values='pointing_game').dropna()
  deeper_only = int(((hits[16] == 1) & (hits[11] == 0)).sum())
  shallower_only = int(((hits[16] == 0) & (hits[11] == 1)).sum())
  row = depth.depth_pairs(records, 'pointing_game', binary=True, n_resamples=50).iloc[0]
  ref = sp_stats.binomtest(deeper_only, deeper_only + shallower_only, 0.5)
  assert (row['deeper'], row['shallower'], row['test']) == (16, 11, 'sign')
  assert row['statistic'] == deeper_only and row['n'] == len(hits)
  assert row['p'] == pytest.approx(ref.pvalue, rel=1e-12)
  assert row['difference'] == pytest.approx((hits[16] - hits[11]).mean())


def test_binary_depth_pairs_with_seeds_sign_test_the_seed_mean_differences():
  records = _records(families={'vgg': (11, 16)}, seeds=2, n=80, seed=2)
  mean = records.groupby(['id', 'depth'])['pointing_game'].mean().unstack().dropna()
  diff = mean[16] - mean[11]
  row = depth.depth_pairs(records, 'pointing_game', binary=True, n_resamples=50).iloc[0]
  ref = sp_stats.binomtest(int((diff > 0).sum()), int((diff != 0).sum()), 0.5)
  assert row['p'] == pytest.approx(ref.pvalue, rel=1e-12)


def test_continuous_depth_pairs_are_wilcoxon_on_seed_mean_differences():
  records = _records(seed=3)
  table = depth.depth_pairs(records, 'ehr_auc', binary=False, n_resamples=50)
  assert len(table) == 6 and set(table['test']) == {'wilcoxon'}
  mean = records.groupby(['family', 'id', 'depth'])['ehr_auc'].mean().unstack().loc['resnet']
  row = table[(table['deeper'] == 50) & (table['shallower'] == 18)].iloc[0]
  ref = sp_stats.wilcoxon(mean[50].dropna() - mean[18].dropna())
  assert row['p'] == pytest.approx(ref.pvalue, rel=1e-12)
  assert row['statistic'] == ref.statistic
  auc = depth.depth_pairs(records, 'roc_auc', binary=False, n_resamples=50)
  assert auc['p'].isna().all() and (auc['test'] == 'none').all()


def test_family_pairs_match_depth_ranks():
  records = _records(seed=5)
  table = depth.family_pairs(records, 'ehr_auc', binary=False, n_resamples=50)
  assert table[['family_a', 'depth_a', 'family_b', 'depth_b']].values.tolist() == [
      ['resnet', 18, 'vgg', 11], ['resnet', 34, 'vgg', 13], ['resnet', 50, 'vgg', 16]]
  mean = records.groupby(['id', 'model'])['ehr_auc'].mean().unstack()
  a = mean[['resnet_50 seed 0', 'resnet_50 seed 1']].mean(axis=1).dropna()
  b = mean[['vgg_16 seed 0', 'vgg_16 seed 1']].mean(axis=1).dropna()
  assert table.iloc[2]['p'] == pytest.approx(sp_stats.wilcoxon(a - b).pvalue, rel=1e-12)
  deepest = depth.family_pairs(records, 'ehr_auc', binary=False, depth_index=[-1],
                               n_resamples=50)
  np.testing.assert_allclose(deepest[['difference', 'low', 'high']],
                             table.iloc[[2]][['difference', 'low', 'high']])
  with pytest.raises(BadInput, match='out of range for family'):
    depth.family_pairs(records, 'ehr_auc', binary=False, depth_index=[3])


def test_random_map_chance_is_the_mask_fraction_monte_carlo():
  # 20000 uniformly random 8x8 maps with tiny masks (1..3 of 64 pixels): the share of maxima in
  # the mask (pointing game) and of the top-K pixels in it (relevance rank, K = mask pixels)
  rng = np.random.default_rng(0)
  n, pixels = 20000, 64
  area = rng.integers(1, 4, n)
  mask = np.arange(pixels)[None] < area[:, None]
  order = np.argsort(-rng.random((n, pixels)), axis=1)
  hits = mask[np.arange(n), order[:, 0]]
  top = np.take_along_axis(mask, order, axis=1)
  rank = np.array([t[:a].mean() for t, a in zip(top, area)])
  records = pd.DataFrame({'has_mask': True, 'mask_fraction': area / pixels})
  chance = depth.chance_level('pointing_game', records)
  se = np.sqrt(np.sum(chance * (1 - chance))) / n  # of the mean of n Bernoulli hits
  assert hits.mean() == pytest.approx(chance.mean(), abs=4 * se)
  assert rank.mean() == pytest.approx(depth.chance_level('relevance_rank', records).mean(),
                                      abs=4 * se)
  assert chance.mean() < 0.04
  unmasked = pd.DataFrame({'has_mask': [True, False], 'mask_fraction': [0.1, np.nan]})
  np.testing.assert_array_equal(depth.chance_level('top_k', unmasked), [0.1, np.nan])
  assert depth.chance_level('ehr_auc', records) is None
  assert depth.chance_level('iou', records) is None


def test_constant_map_scores_the_chance_level_in_the_kernel():
  mask = np.zeros((8, 8), bool)
  mask[2:5, 1:4] = True  # 9 of 64
  out = localisation_metrics(jnp.full((8, 8), 0.7), mask)
  records = pd.DataFrame({'has_mask': [True], 'mask_fraction': [float(out['mask_fraction'])]})
  assert records['mask_fraction'][0] == 9 / 64
  for metric in ('relevance_mass', 'relevance_mass_weighted', 'pixel_pr_auc', 'pixel_roc_auc'):
    assert float(out[metric]) == pytest.approx(depth.chance_level(metric, records)[0],
                                               rel=1e-6), metric


def test_beats_chance_is_the_seed_mean_excess_over_the_mask_fraction():
  records = _records(families={'vgg': (11, 13)}, seed=6)
  table = depth.beats_chance(records, 'pointing_game', n_resamples=100)
  masked = records[records['has_mask']]
  excess = (masked['pointing_game'] - masked['mask_fraction']).groupby(
      [masked['depth'], masked['id']]).mean()
  for _, row in table.iterrows():
    e = excess.loc[row['depth']]
    assert row['excess'] == pytest.approx(e.mean())
    assert row['test'] == 't'
    assert row['p'] == pytest.approx(sp_stats.ttest_1samp(e, 0.0).pvalue, rel=1e-12)
    assert row['low'] < row['excess'] < row['high']
  # A mean above chance with most lesions missed (30 hits in 100, chance 0.05): above chance,
  # though the median excess is negative.
  hits = np.r_[np.ones(30), np.zeros(70)]
  base = records[(records['model'] == records['model'].iloc[0]) & records['has_mask']]
  one = base.iloc[np.arange(100) % len(base)].assign(
      id=[str(i) for i in range(100)], pointing_game=hits, mask_fraction=0.05)
  row = depth.beats_chance(one, 'pointing_game', n_resamples=50).iloc[0]
  assert row['excess'] == pytest.approx(0.25) and row['low'] > 0
  assert row['p'] == pytest.approx(sp_stats.ttest_1samp(hits - 0.05, 0.0).pvalue)
  assert row['p'] < 1e-6
  with pytest.raises(BadInput, match='no analytic chance'):
    depth.beats_chance(records, 'ehr_auc')


def test_holm_all_is_holm_over_every_test_of_every_table():
  records = _records(seed=8)
  tables = [depth.depth_trend(records, 'ehr_auc', n_resamples=20),
            depth.depth_pairs(records, 'roc_auc', binary=False, n_resamples=20),
            depth.depth_pairs(records, 'pointing_game', binary=True, n_resamples=20)]
  adjusted = depth.holm_all(tables)
  p = pd.concat([t['p'] for t in tables]).to_numpy()
  expected = statistics.holm(p[~np.isnan(p)])
  got = pd.concat([t['p_holm'] for t in adjusted]).to_numpy()
  np.testing.assert_allclose(got[~np.isnan(p)], expected)
  assert np.isnan(got[np.isnan(p)]).all() and np.isnan(p).sum() == 6
  assert all('p_holm' not in t.columns for t in tables)


def test_bad_input_names_the_column_family_or_model():
  records = _records(n=12)
  with pytest.raises(BadInput, match=r"\['seed'\]"):
    depth.hierarchical_bootstrap(records.drop(columns='seed'), 'ehr_auc')
  with pytest.raises(BadInput, match="'iou'"):
    depth.hierarchical_bootstrap(records, 'iou')
  one_depth = records[(records['family'] == 'resnet') | (records['depth'] == 11)]
  with pytest.raises(BadInput, match="family 'vgg'.*>= 2 depths"):
    depth.depth_trend(one_depth, 'ehr_auc')
  fewer = records.drop(records[(records['model'] == 'vgg_13 seed 1') &
                               (records['id'] == 'img3')].index)
  with pytest.raises(BadInput, match="'vgg_13 seed 1' cover different images"):
    depth.depth_pairs(fewer, 'ehr_auc', binary=False)
  not_binary = records.copy()
  not_binary.loc[(records['model'] == 'vgg_13 seed 1') & records['has_mask'], 'pointing_game'] = 1.5
  with pytest.raises(BadInput, match="not binary.*model 'vgg_13 seed 1'"):
    depth.depth_pairs(not_binary, 'pointing_game', binary=True)
  with pytest.raises(BadInput, match='column .depth. must be an integer'):
    depth.hierarchical_bootstrap(records.assign(depth=records['depth'] + 0.5), 'ehr_auc')
  with pytest.raises(BadInput, match='test must be one of'):
    depth.depth_trend(records, 'ehr_auc', test='anova')
