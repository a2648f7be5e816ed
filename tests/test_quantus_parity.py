"""Parity with Quantus 0.6.0's localisation metrics, and each known Quantus fault demonstrated.

Quantus runs with ``model=None``, ``x_batch`` (B, 1, H, W), precomputed ``a_batch`` / ``s_batch``
and ``normalise=False, abs=False, disable_warnings=True``, so that it scores the same arrays.
"""

import functools

import jax
import numpy as np
import pytest

from cam_jax.metrics.localisation import localisation_metrics

quantus = pytest.importorskip('quantus')
quantus_pointing_game = pytest.importorskip('quantus.metrics.localisation.pointing_game')

# Quantus and sklearn warn about the very faults demonstrated below.
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning', 'ignore::RuntimeWarning')
K = 10
OPTIONS = dict(normalise=False, abs=False, disable_warnings=True)
ours = jax.jit(jax.vmap(functools.partial(localisation_metrics, top_k=K)))


def _quantus(metric, heat, mask):
  """Quantus scores of (B, H, W) heat maps and masks."""
  a = heat[:, None].astype(np.float32)
  return np.asarray(metric(model=None, x_batch=np.zeros_like(a), y_batch=np.zeros(len(a), int),
                           a_batch=a, s_batch=mask[:, None].astype(np.float32)), np.float64)


def _maps(n=6, hw=16, seed=0):
  """Continuous (tie-free) upsampled maps and elliptic masks, none empty or full."""
  rng = np.random.default_rng(seed)
  heat = np.stack([np.kron(rng.random((4, 4)), np.ones((4, 4))) for _ in range(n)])
  heat = (heat + 1e-3 * rng.random(heat.shape)).astype(np.float32)
  heat = (heat - heat.min((1, 2), keepdims=True)) / np.ptp(heat, (1, 2), keepdims=True)
  yy, xx = np.mgrid[:hw, :hw]
  masks = np.stack([((yy - cy) / r) ** 2 + ((xx - cx) / r) ** 2 <= 1
                    for cy, cx, r in rng.uniform([3, 3, 2], [12, 12, 6], (n, 3))])
  return heat.astype(np.float32), masks


@pytest.fixture(scope='module')
def data():
  heat, masks = _maps()
  return heat, masks, ours(heat, masks)


@pytest.mark.parametrize('metric, key', [
    (lambda: quantus.PointingGame(**OPTIONS), 'pointing_game'),
    (lambda: quantus.RelevanceMassAccuracy(**OPTIONS), 'relevance_mass'),
    (lambda: quantus.RelevanceRankAccuracy(**OPTIONS), 'relevance_rank'),
    (lambda: quantus.TopKIntersection(k=K, **OPTIONS), 'top_k'),
    (lambda: quantus.AttributionLocalisation(weighted=False, **OPTIONS), 'relevance_mass'),
    (lambda: quantus.AUC(**OPTIONS), 'pixel_roc_auc'),
])
def test_equal_where_quantus_is_right(data, metric, key):
  heat, masks, out = data
  theirs = _quantus(metric(), heat, masks)
  assert 0 < theirs.mean() < 1  # a non-trivial comparison
  # AttributionLocalisation divides by total + 1e-9; the rest agree to float32 rounding.
  np.testing.assert_allclose(np.asarray(out[key]), theirs, atol=1e-6)


@pytest.mark.slow
def test_quantus_counts_ties_at_the_maximum_as_hits():
  # Four pixels tied at the maximum, one in the mask: Quantus scores a hit (1); the expected hit
  # over the tied pixels is 1/4.
  heat = np.full((1, 16, 16), 0.3, np.float32)
  heat[0, 0, 0] = heat[0, 0, 15] = heat[0, 15, 0] = heat[0, 15, 15] = 1.0
  heat[0, 5, 5] = 0.0
  mask = np.zeros((1, 16, 16), bool)
  mask[0, 12:, 12:] = True
  assert _quantus(quantus.PointingGame(**OPTIONS), heat, mask)[0] == 1.0
  assert float(ours(heat, mask)['pointing_game'][0]) == 0.25


def test_quantus_gives_nan_or_a_hit_on_an_empty_mask(data):
  heat, masks, _ = data
  masks = masks.copy()
  masks[1] = False
  out = ours(heat, masks)
  for metric in (quantus.RelevanceMassAccuracy(**OPTIONS), quantus.RelevanceRankAccuracy(**OPTIONS),
                 quantus.TopKIntersection(k=K, **OPTIONS), quantus.AUC(**OPTIONS),
                 quantus.AttributionLocalisation(**OPTIONS)):
    theirs = _quantus(metric, heat, masks)
    assert np.isnan(theirs[1]) and not np.isnan(theirs[[0, 2]]).any(), type(metric).__name__
  # PointingGame writes its NaN into a bool array, where it becomes True: an empty mask is a hit.
  assert _quantus(quantus.PointingGame(**OPTIONS), heat, masks)[1] == 1.0
  # We give defined values: no mass, rank or hit in an empty mask, ROC-AUC at chance.
  for key in ('relevance_mass', 'relevance_rank', 'top_k', 'pointing_game'):
    assert float(out[key][1]) == 0.0, key
  assert float(out['pixel_roc_auc'][1]) == 0.5


class _SumWithoutKeepdims:
  """numpy, except that ``sum`` ignores ``keepdims``: gets Quantus's weighted pointing game past
  its shape error to the next fault."""

  def __getattr__(self, name):
    return getattr(np, name)

  @staticmethod
  def sum(*args, keepdims=False, **kwargs):
    del keepdims
    return np.sum(*args, **kwargs)


def test_quantus_weighted_pointing_game_fails_then_casts_the_weight_to_bool(data, monkeypatch):
  heat, masks, out = data
  # Its weights have shape (hits, 1) (keepdims=True) and cannot go into the (hits,) selection.
  with pytest.raises(TypeError, match='boolean array indexing assignment'):
    _quantus(quantus.PointingGame(weighted=True, **OPTIONS), heat, masks)
  # Past that, the weight 1 - area fraction is stored into the bool hit array: every hit stays
  # True, so the "weighted" game equals the unweighted one.
  monkeypatch.setattr(quantus_pointing_game, 'np', _SumWithoutKeepdims())
  weighted = _quantus(quantus.PointingGame(weighted=True, **OPTIONS), heat, masks)
  plain = _quantus(quantus.PointingGame(**OPTIONS), heat, masks)
  np.testing.assert_array_equal(weighted, plain)
  assert plain.any()
  fraction = masks.reshape(len(masks), -1).mean(axis=1)
  np.testing.assert_allclose(out['pointing_game_weighted'], plain * (1 - fraction), atol=1e-6)
  assert np.all(np.asarray(out['pointing_game_weighted'])[plain > 0] < 1)


def test_quantus_weighted_attribution_localisation_depends_on_the_batch_size(data):
  heat, masks, out = data
  n = heat[0].size
  inside = masks.reshape(len(masks), -1).sum(axis=1)
  mu = np.asarray(out['relevance_mass'], np.float64)

  def weighted(batch):
    return _quantus(quantus.AttributionLocalisation(weighted=True, **OPTIONS), heat[:batch],
                    masks[:batch])[0]

  # Quantus multiplies by the mask size over x_batch[2:].size: the elements of the samples after
  # the first two. No such samples: inf.
  assert np.isinf(weighted(1)) and np.isinf(weighted(2))
  # Three samples: one sample's size, giving mu * S_in / S_tot, the inverse of the paper's weight.
  assert weighted(3) == pytest.approx(mu[0] * inside[0] / n, rel=1e-5)
  # Five samples: three samples' size; the same image scores a third of that.
  assert weighted(5) == pytest.approx(mu[0] * inside[0] / (3 * n), rel=1e-5)
  # Kohlbrenner et al.: mu_w = mu * S_tot / S_in, whatever the batch.
  np.testing.assert_allclose(out['relevance_mass_weighted'], mu * n / inside, rtol=1e-5)
