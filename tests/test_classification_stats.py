import itertools

import numpy as np
import pytest
from scipy import stats as sp_stats
from sklearn import metrics as sk_metrics

from cam_jax.analysis.statistics import (
  bootstrap_ci,
  bootstrap_ci_fn,
  format_ci,
  holm,
  paired_bootstrap,
  paired_bootstrap_fn,
  paired_delong,
  paired_wilcoxon,
  spearman_bootstrap,
)
from cam_jax.metrics.classification import classification_metrics, f1, pr_auc, roc_auc


def _draws(n, n_resamples, seed):
  """The resampled indices the module documents: default_rng(seed).integers(0, n, (R, n))."""
  return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _interval(values, confidence=0.95):
  return tuple(np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2]))


# ----------------------------------------------------------------------------- classification


def test_roc_auc_hand_case():
  # Positives 0.35, 0.8 vs negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats both -> 3/4.
  assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_matches_mann_whitney_with_ties():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, 300)
  scores = np.round(rng.random(300) + 0.3 * labels, 1)  # coarse rounding -> many ties
  pos, neg = scores[labels == 1], scores[labels == 0]
  expected = sp_stats.mannwhitneyu(pos, neg).statistic / (pos.size * neg.size)
  assert roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_single_class_raises():
  with pytest.raises(ValueError, match='both classes'):
    roc_auc([1, 1, 1], [0.2, 0.5, 0.9])


def test_pr_auc_hand_cases():
  # Descending 0.8(+) 0.4(-) 0.35(+) 0.1(-): recall 1/2 at precision 1, recall 1 at 2/3 -> 5/6.
  assert pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)
  # Tied 0.5 holds one positive and one negative: they enter together at precision 2/3, so
  # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 (taking the positive first would give 1).
  assert pr_auc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]) == pytest.approx(5 / 6)
  assert pr_auc([1, 1], [0.2, 0.7]) == 1.0


@pytest.mark.parametrize('decimals', [1, 3, 12])
def test_pr_auc_matches_sklearn(decimals):
  rng = np.random.default_rng(decimals)
  labels = rng.integers(0, 2, 257)
  scores = np.round(rng.random(257) + 0.4 * labels, decimals)
  assert pr_auc(labels, scores) == pytest.approx(
      sk_metrics.average_precision_score(labels, scores), abs=1e-12)


def test_pr_auc_bad_input_raises():
  with pytest.raises(ValueError, match='positive'):
    pr_auc([0, 0], [0.3, 0.4])
  with pytest.raises(ValueError, match='finite'):
    pr_auc([0, 1], [0.3, np.nan])
  with pytest.raises(ValueError, match='length'):
    pr_auc([0, 1, 1], [0.3, 0.4])


def test_f1_matches_sklearn_and_undefined_raises():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 2, 200)
  probs = np.clip(rng.random(200) * 0.8 + 0.3 * labels, 0, 1)
  for threshold in (0.3, 0.5, 0.7):
    assert f1(labels, probs, threshold) == pytest.approx(
        sk_metrics.f1_score(labels, probs >= threshold), abs=1e-12)
  assert f1([0, 0, 1], [0.9, 0.2, 0.1]) == 0.0  # TP 0, FP 1, FN 1
  with pytest.raises(ValueError, match='undefined'):
    f1([0, 0], [0.1, 0.2])


def test_classification_metrics_hand_case():
  # pred = probs >= 0.5 -> [0, 1, 1, 0, 1]; labels [0, 0, 1, 1, 1]
  # correct: idx 0, 2, 4 -> accuracy 3/5; TP 2 of 3 -> sens 2/3; TN 1 of 2 -> spec 1/2
  # AUC: pos {.7,.4,.9} vs neg {.2,.6}: .7 beats 2, .4 beats 1, .9 beats 2 -> 5/6
  # F1: TP 2, FP 1, FN 1 -> 4 / 6.  AP: descending .9+ .7+ .6- .4+ .2-: recall steps of 1/3
  # at precision 1, 1, 3/4 -> 11/12.
  out = classification_metrics([0, 0, 1, 1, 1], [0.2, 0.6, 0.7, 0.4, 0.9])
  assert out['accuracy'] == pytest.approx(0.6)
  assert out['sensitivity'] == pytest.approx(2 / 3)
  assert out['specificity'] == pytest.approx(0.5)
  assert out['roc_auc'] == pytest.approx(5 / 6)
  assert out['f1'] == pytest.approx(2 / 3)
  assert out['pr_auc'] == pytest.approx(11 / 12)
  assert out['n'] == 5 and out['n_pos'] == 3


def test_classification_metrics_single_class_gives_none():
  out = classification_metrics([0, 0, 0], [0.2, 0.6, 0.1])
  assert out['sensitivity'] is None and out['roc_auc'] is None and out['pr_auc'] is None
  assert out['f1'] == 0.0  # one false positive: defined
  assert out['specificity'] == pytest.approx(2 / 3)
  assert out['n_pos'] == 0
  assert classification_metrics([0, 0], [0.2, 0.1])['f1'] is None
  out = classification_metrics([1, 1], [0.2, 0.9])
  assert out['pr_auc'] == 1.0 and out['roc_auc'] is None and out['specificity'] is None


# ----------------------------------------------------------------------------- single bootstrap


def test_bootstrap_ci_deterministic_and_contains_point():
  values = np.random.default_rng(2).normal(size=100)
  first = bootstrap_ci(values, seed=7)
  assert first == bootstrap_ci(values, seed=7)
  point, low, high = first
  assert point == pytest.approx(values.mean())
  assert low < point < high


def test_bootstrap_ci_width_matches_normal_theory():
  values = np.random.default_rng(3).normal(loc=2.0, scale=1.5, size=400)
  _, low, high = bootstrap_ci(values)
  expected = 2 * 1.96 * values.std(ddof=1) / np.sqrt(values.size)
  assert abs((high - low) - expected) < 0.2 * expected


def test_bootstrap_ci_constant_and_other_statistic():
  point, low, high = bootstrap_ci(np.full(50, 0.3))
  assert low == high == point
  point, low, high = bootstrap_ci(np.arange(21.0), statistic=np.median)
  assert point == 10.0 and low <= 10.0 <= high


def test_bootstrap_ci_empty_raises():
  with pytest.raises(ValueError):
    bootstrap_ci(np.array([]))


def test_bootstrap_ci_fn_roc_auc_skips_single_class_resamples():
  labels = np.array([0, 1, 0, 1])
  scores = np.array([0.2, 0.9, 0.6, 0.4])
  point, low, high, n_skipped = bootstrap_ci_fn(roc_auc, (labels, scores), n_resamples=2000, seed=0)
  assert point == pytest.approx(0.75)
  assert 0.0 <= low <= point <= high <= 1.0
  # P(one class in a resample of 4 from 2+2) = 2 * (1/2)**4 = 1/8 -> ~250 of 2000.
  assert 150 < n_skipped < 350
  assert bootstrap_ci_fn(roc_auc, (labels, scores), n_resamples=2000, seed=0)[3] == n_skipped


def test_format_ci():
  assert format_ci(0.91234, 0.8739, 0.94512) == '0.912 [0.874, 0.945]'
  assert format_ci(1, 0.5, 1.5, digits=1) == '1.0 [0.5, 1.5]'


# ----------------------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_mean_equals_bootstrap_of_models_and_of_differences():
  rng = np.random.default_rng(5)
  a, b, c = rng.normal(size=(3, 60))
  table = paired_bootstrap({'a': a, 'b': b, 'c': c}, n_resamples=300, seed=9)
  assert list(table['a']) == ['a', 'b', 'c', 'a', 'a', 'b']
  assert list(table['b']) == ['', '', '', 'b', 'c', 'c']
  assert (table['n'] == 60).all() and (table['n_skipped'] == 0).all()
  for i, v in enumerate((a, b, c)):
    assert tuple(table.iloc[i][['point', 'low', 'high']]) == pytest.approx(
        bootstrap_ci(v, n_resamples=300, seed=9), abs=1e-12)
  # mean(a[idx]) - mean(b[idx]) == mean((a - b)[idx]): the paired interval of the difference is
  # the bootstrap interval of the per-item differences under the same draws.
  for row, (x, y) in zip(range(3, 6), ((a, b), (a, c), (b, c))):
    assert tuple(table.iloc[row][['point', 'low', 'high']]) == pytest.approx(
        bootstrap_ci(x - y, n_resamples=300, seed=9), abs=1e-12)


def test_paired_bootstrap_median_difference_brute_force():
  rng = np.random.default_rng(6)
  a, b = rng.random((2, 7)), rng.random(7)
  table = paired_bootstrap({'x': a[0], 'y': b}, statistic=np.median, n_resamples=200, seed=3,
                           confidence=0.8)
  diffs = [np.median(a[0][row]) - np.median(b[row]) for row in _draws(7, 200, 3)]
  row = table[table['b'] == 'y'].iloc[0]
  assert row['point'] == pytest.approx(np.median(a[0]) - np.median(b))
  assert (row['low'], row['high']) == pytest.approx(_interval(diffs, 0.8))


def test_paired_interval_narrower_than_unpaired_for_correlated_models():
  rng = np.random.default_rng(7)
  per_image = rng.normal(0.0, 1.0, 400)  # images differ a lot, models agree per image
  a = per_image + rng.normal(0.0, 0.1, 400)
  b = per_image + 0.05 + rng.normal(0.0, 0.1, 400)
  row = paired_bootstrap({'a': a, 'b': b}, n_resamples=1000).iloc[2]
  paired_width = row['high'] - row['low']
  unpaired = [a[i].mean() - b[j].mean()
              for i, j in zip(_draws(400, 1000, 1), _draws(400, 1000, 2))]
  unpaired_width = np.subtract(*_interval(unpaired)[::-1])
  assert paired_width < 0.25 * unpaired_width
  # Normal theory for the paired difference: 2 * 1.96 * sd(a - b) / sqrt(n).
  expected = 2 * 1.96 * np.std(a - b, ddof=1) / 20
  assert paired_width == pytest.approx(expected, rel=0.2)
  assert row['high'] < 0  # b is 0.05 higher per image: the paired CI excludes 0


def test_paired_bootstrap_bad_input_raises():
  with pytest.raises(ValueError, match="'b' has 1 NaN"):
    paired_bootstrap({'a': np.ones(3), 'b': np.array([1.0, np.nan, 2.0])})
  with pytest.raises(ValueError, match='lengths differ'):
    paired_bootstrap({'a': np.ones(3), 'b': np.ones(4)})
  with pytest.raises(ValueError, match='empty'):
    paired_bootstrap({'a': np.ones(0), 'b': np.ones(0)})
  with pytest.raises(ValueError, match='1-D'):
    paired_bootstrap({'a': np.ones((2, 2))})


def test_paired_bootstrap_fn_roc_auc_skips_the_same_resamples_for_all_models():
  rng = np.random.default_rng(8)
  labels = np.array([0, 1, 0, 1, 1, 0])
  sa, sb = rng.random(6), rng.random(6)
  quantities = {'a': lambda i: roc_auc(labels[i], sa[i]), 'b': lambda i: roc_auc(labels[i], sb[i])}
  table = paired_bootstrap_fn(quantities, 6, n_resamples=500, seed=4)
  # Labels are shared, so the single-class resamples are the same for both models and each
  # model's row equals bootstrap_ci_fn on its own arrays.
  for i, s in enumerate((sa, sb)):
    expected = bootstrap_ci_fn(roc_auc, (labels, s), n_resamples=500, seed=4)
    assert tuple(table.iloc[i][['point', 'low', 'high', 'n_skipped']]) == pytest.approx(expected)
  diffs = [roc_auc(labels[r], sa[r]) - roc_auc(labels[r], sb[r])
           for r in _draws(6, 500, 4) if 0 < labels[r].sum() < 6]
  row = table.iloc[2]
  assert row['point'] == pytest.approx(roc_auc(labels, sa) - roc_auc(labels, sb))
  assert (row['low'], row['high']) == pytest.approx(_interval(diffs))
  assert row['n_skipped'] == 500 - len(diffs) > 0
  with pytest.raises(ValueError, match='both classes'):
    paired_bootstrap_fn({'a': lambda i: roc_auc(np.zeros(6)[i], sa[i])}, 6)


# ----------------------------------------------------------------------------- Holm


def test_holm_hand_case():
  # Sorted 0.005, 0.01, 0.03, 0.04 (m = 4) times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04;
  # running max -> 0.02, 0.03, 0.06, 0.06; back in input order:
  assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # 2 * 0.5 = 1; 0.6 -> max(1, 0.6) = 1
  assert holm([0.01, 0.01, 0.9]) == pytest.approx([0.03, 0.03, 0.9])
  assert holm([0.2]) == pytest.approx([0.2])
  assert holm([]).size == 0


def test_holm_brute_force_definition():
  p = np.random.default_rng(9).random(9) ** 3
  order = np.argsort(p)
  m = p.size
  expected = np.empty(m)
  for k in range(m):  # max over j <= k of min(1, (m - j) p_(j)), 0-based
    expected[order[k]] = max(min(1.0, (m - j) * p[order[j]]) for j in range(k + 1))
  assert holm(p) == pytest.approx(expected)


def test_holm_bad_input_raises():
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    holm([0.1, 1.2])
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    holm([0.1, np.nan])


# ----------------------------------------------------------------------------- paired tests


def test_paired_wilcoxon_matches_scipy_and_holm():
  rng = np.random.default_rng(10)
  base = rng.random(40)
  samples = {'a': base + rng.normal(0, 0.1, 40), 'b': base + 0.05 + rng.normal(0, 0.1, 40),
             'c': np.round(base, 1)}
  samples['d'] = samples['c'].copy()
  samples['d'][:5] += 0.1  # c vs d: 35 zero differences
  table = paired_wilcoxon(samples)
  assert list(zip(table['a'], table['b'])) == list(itertools.combinations('abcd', 2))
  for _, row in table.iterrows():
    expected = sp_stats.wilcoxon(samples[row['a']] - samples[row['b']])
    assert row['statistic'] == pytest.approx(expected.statistic)
    assert row['p'] == pytest.approx(expected.pvalue)
  assert table['p_holm'].to_numpy() == pytest.approx(holm(table['p'].to_numpy()))
  assert (table['n'] == 40).all() and (table['test'] == 'wilcoxon').all()
  assert table.iloc[-1]['note'] == '35 zero differences dropped'


def test_paired_wilcoxon_all_zero_differences_gives_p_one():
  x = np.array([0.1, 0.5, 0.7])
  table = paired_wilcoxon({'a': x, 'b': x.copy(), 'c': x + [0.1, 0.2, 0.3]})
  row = table.iloc[0]
  assert (row['statistic'], row['p'], row['note']) == (0.0, 1.0, 'all 3 differences are zero')
  assert np.isfinite(table[['statistic', 'p', 'p_holm']].to_numpy()).all()
  with pytest.raises(ValueError, match='at least 2'):
    paired_wilcoxon({'a': x})
  with pytest.raises(ValueError, match='NaN'):
    paired_wilcoxon({'a': x, 'b': np.array([0.1, np.nan, 0.3])})


def _delong_brute_force(labels, sa, sb):
  """DeLong z from the O(n_pos * n_neg) kernel psi(X, Y) = 1 if X > Y, 1/2 if equal."""
  def kernel(s):
    pos, neg = s[labels == 1][:, None], s[labels == 0][None, :]
    return (pos > neg) + 0.5 * (pos == neg)

  ka, kb = kernel(sa), kernel(sb)
  v10 = np.stack([ka.mean(axis=1), kb.mean(axis=1)])  # per positive
  v01 = np.stack([ka.mean(axis=0), kb.mean(axis=0)])  # per negative
  s = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
  return (ka.mean() - kb.mean()) / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])


def test_paired_delong_matches_brute_force_with_ties():
  rng = np.random.default_rng(11)
  labels = rng.integers(0, 2, 80)
  scores = {'a': np.round(rng.random(80) + 0.5 * labels, 1),
            'b': np.round(rng.random(80) + 0.2 * labels, 1),
            'c': np.round(rng.random(80) + 0.35 * labels, 2)}
  table = paired_delong(labels, scores)
  for _, row in table.iterrows():
    z = _delong_brute_force(labels, scores[row['a']], scores[row['b']])
    assert row['statistic'] == pytest.approx(z)
    assert row['p'] == pytest.approx(2 * sp_stats.norm.sf(abs(z)))
  assert table['p_holm'].to_numpy() == pytest.approx(holm(table['p'].to_numpy()))
  assert (table['test'] == 'delong').all() and (table['n'] == 80).all()


def test_paired_delong_degenerate_and_bad_input():
  labels = np.array([0, 0, 1, 1])
  s = np.array([0.1, 0.2, 0.8, 0.9])
  table = paired_delong(labels, {'a': s, 'b': s + 0.05, 'c': np.full(4, 0.5)})
  # a and b both separate perfectly: identical placements, z 0, p 1.
  assert tuple(table.iloc[0][['statistic', 'p']]) == (0.0, 1.0)
  # a (AUC 1) vs constant c (AUC 1/2): every placement differs by exactly 1/2, zero variance.
  assert table.iloc[1]['statistic'] == np.inf and table.iloc[1]['p'] == 0.0
  assert 'zero variance' in table.iloc[1]['note']
  with pytest.raises(ValueError, match='2 positives'):
    paired_delong([0, 0, 1], {'a': [0.1, 0.2, 0.3], 'b': [0.3, 0.2, 0.1]})
  with pytest.raises(ValueError, match='length'):
    paired_delong([0, 0, 1, 1, 1], {'a': s, 'b': s})


# ----------------------------------------------------------------------------- Spearman


def _mean_of(v):
  return lambda idx: v[idx].mean()


def test_spearman_bootstrap_point_and_interval_match_scipy_brute_force():
  rng = np.random.default_rng(12)
  n, names = 12, ['m0', 'm1', 'm2', 'm3', 'm4']
  depth = {'m0': 11, 'm1': 16, 'm2': 16, 'm3': 50, 'm4': 18}  # a tie in depth
  per_item = {m: rng.random(n) + 0.1 * k for k, m in enumerate(names)}
  correct = {m: (rng.random(n) < 0.7).astype(float) for m in names}
  metric = {m: _mean_of(per_item[m]) for m in names}
  accuracy = {m: _mean_of(correct[m]) for m in names}
  for x, x_values in ((depth, lambda r: [depth[m] for m in names]),
                      (accuracy, lambda r: [correct[m][r].mean() for m in names])):
    out = spearman_bootstrap(x, metric, n_items=n, n_resamples=150, seed=5)
    everything = np.arange(n)
    assert out['rho'] == pytest.approx(sp_stats.spearmanr(
        x_values(everything), [per_item[m].mean() for m in names]).statistic)
    rhos = []
    for r in _draws(n, 150, 5):
      xs, ys = x_values(r), [per_item[m][r].mean() for m in names]
      if np.ptp(xs) > 0 and np.ptp(ys) > 0:
        rhos.append(sp_stats.spearmanr(xs, ys).statistic)
    assert (out['low'], out['high']) == pytest.approx(_interval(rhos))
    assert out['n_skipped'] == 150 - len(rhos)
    assert out['n_models'] == 5 and out['n_resamples'] == 150


def test_spearman_bootstrap_skips_resamples_where_a_quantity_is_constant():
  # Accuracy over 2 images: a [1, 0], b [1, 1], c [1, 0].  A resample drawing image 0 twice gives
  # every model accuracy 1 (rho undefined, skipped); any other draw leaves a, c below b.
  correct = {'a': np.array([1.0, 0.0]), 'b': np.array([1.0, 1.0]), 'c': np.array([1.0, 0.0])}
  out = spearman_bootstrap({m: _mean_of(v) for m, v in correct.items()}, {'a': 1, 'b': 3, 'c': 2},
                           n_items=2, n_resamples=400, seed=2)
  assert out['n_skipped'] == int(np.all(_draws(2, 400, 2) == 0, axis=1).sum()) > 50
  # Ranks: x (a, b, c) tied (1.5, 3, 1.5) vs y (1, 3, 2) -> rho = 0.866 on every used resample.
  assert out['rho'] == out['low'] == out['high'] == pytest.approx(
      sp_stats.spearmanr([0.5, 1, 0.5], [1, 3, 2]).statistic)


def test_spearman_bootstrap_perfect_monotone_depth_gives_one():
  rng = np.random.default_rng(13)
  depth = {'vgg11': 11, 'vgg16': 16, 'resnet50': 50, 'resnet101': 101}
  # Each model's per-image metric is its depth rank plus noise far smaller than the gaps.
  per_item = {m: k + rng.uniform(0, 0.1, 30) for k, m in enumerate(depth)}
  out = spearman_bootstrap(depth, {m: _mean_of(v) for m, v in per_item.items()}, n_items=30,
                           n_resamples=200)
  assert out['rho'] == 1.0 and out['low'] <= 1.0 <= out['high'] and out['low'] == 1.0
  assert out['n_skipped'] == 0 and out['note'] == ''
  reverse = spearman_bootstrap({m: -d for m, d in depth.items()},
                               {m: _mean_of(v) for m, v in per_item.items()}, n_items=30,
                               n_resamples=50)
  assert reverse['rho'] == -1.0


def test_spearman_bootstrap_degenerate_and_bad_input():
  y = {m: float(k) for k, m in enumerate('abc')}
  out = spearman_bootstrap({'a': 5, 'b': 5, 'c': 5}, y, n_items=4, n_resamples=20)
  assert out['rho'] is None and out['low'] is None and 'x constant' in out['note']
  with pytest.raises(ValueError, match='at least 3 models'):
    spearman_bootstrap({'a': 1, 'b': 2}, {'a': 1, 'b': 2}, n_items=4)
  with pytest.raises(ValueError, match="only in y: \\['d'\\]"):
    spearman_bootstrap({'a': 1, 'b': 2, 'c': 3}, {'a': 1, 'b': 2, 'c': 3, 'd': 4}, n_items=4)

  def failing(idx):
    raise ValueError('no masked image')

  with pytest.raises(ValueError, match='no masked image'):
    spearman_bootstrap({'a': 1, 'b': 2, 'c': 3}, {'a': failing, 'b': 2, 'c': 3}, n_items=4)
