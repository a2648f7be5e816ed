import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from cam_jax.scoring.classification import classification_metrics, roc_auc
from cam_jax.scoring.statistics import bootstrap_ci, bootstrap_ci_fn, format_ci


def test_roc_auc_hand_case():
    # Positives 0.35, 0.8 vs negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats both -> 3/4.
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # coarse rounding -> many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    expected = mannwhitneyu(pos, neg).statistic / (pos.size * neg.size)
    assert roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_single_class_raises():
    with pytest.raises(ValueError, match='both classes'):
        roc_auc([1, 1, 1], [0.2, 0.5, 0.9])


def test_classification_metrics_hand_case():
    # pred = probs >= 0.5 -> [0, 1, 1, 0, 1]; labels [0, 0, 1, 1, 1]
    # correct: idx 0, 2, 4 -> accuracy 3/5; TP 2 of 3 -> sens 2/3; TN 1 of 2 -> spec 1/2
    # AUC: pos {.7,.4,.9} vs neg {.2,.6}: .7 beats 2, .4 beats 1, .9 beats 2 -> 5/6
    out = classification_metrics([0, 0, 1, 1, 1], [0.2, 0.6, 0.7, 0.4, 0.9])
    assert out['accuracy'] == pytest.approx(0.6)
    assert out['sensitivity'] == pytest.approx(2 / 3)
    assert out['specificity'] == pytest.approx(0.5)
    assert out['roc_auc'] == pytest.approx(5 / 6)
    assert out['n'] == 5 and out['n_pos'] == 3


def test_classification_metrics_single_class_gives_none():
    out = classification_metrics([0, 0, 0], [0.2, 0.6, 0.1])
    assert out['sensitivity'] is None and out['roc_auc'] is None
    assert out['specificity'] == pytest.approx(2 / 3)
    assert out['n_pos'] == 0


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
