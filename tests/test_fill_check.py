"""The fill check against closed forms: a model keyed on "pixel value near the fill" sees the
'mean' fill and not a reference far from it; healthy images only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cam_jax.core import mesh as mesh_lib
from cam_jax.models import normalisation
from cam_jax.scoring import fill_check


class NearMean(nnx.Module):
  """logit = 10 * (the share of pixels within about 0.1 of 0, the data mean) - 3."""

  normalisation = normalisation.legacy(1)

  def __call__(self, x, train=False):
    del train
    return (10 * jnp.mean(jnp.exp(-(x / 0.1) ** 2), axis=(1, 2, 3)) - 3)[:, None]


def records(values, labels, prefix):
  """Constant 8x8 images of uint8 ``values``."""
  return [{'image': np.full((8, 8, 1), v, np.uint8), 'mask': np.zeros((8, 8), bool),
           'label': label, 'id': f'{prefix}{i}'}
          for i, (v, label) in enumerate(zip(values, labels))]


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_mean_fill_raises_the_finding_by_its_closed_form_and_a_far_reference_does_not():
  # Healthy images far from the mean (in model input about +-1.9) and one positive (skipped).
  data = records([10, 250, 20, 240, 230], [0, 0, 0, 0, 1], 'test')
  references = records([5, 252, 128], [0, 0, 1], 'ref')  # the label-1 one is never used
  check = fill_check.fill_check(NearMean(), data, fills=('mean', 'reference', 'texture'),
                                fill_from=references, grid=2, n_steps=4, batch_size=2,
                                mesh=mesh_lib.make_mesh(jax.devices()[:1]),
                                n_resamples=50)
  rec = check.records
  assert list(rec['id']) == ['test0', 'test1', 'test2', 'test3'] * 3
  # Every image sits far from 0 in model input, where the model sees nothing.
  far = normalisation.legacy(1).normalise(np.array([5, 10, 20, 230, 240, 250, 252]))
  assert np.abs(far).min() > 1
  # 'mean': after point i the share at 0 is i / 4 (16 of 64 pixels a step) -> logit 2.5 i - 3.
  change = sigmoid(2.5 * np.arange(5) - 3) - sigmoid(-3)
  mean = rec[rec['fill'] == 'mean']
  np.testing.assert_allclose(mean[[f'change@{i}' for i in range(5)]],
                             np.tile(change, (4, 1)), atol=1e-4)
  np.testing.assert_allclose(mean['change'], (change.sum() - change[-1] / 2) / 4, atol=1e-4)
  np.testing.assert_allclose(rec['prob'], sigmoid(-3), atol=1e-4)
  for fill in ('reference', 'texture'):  # the nearest references are far from 0 too
    np.testing.assert_allclose(rec[rec['fill'] == fill]['change'], 0, atol=1e-4)
  s = check.summary.set_index('fill')
  assert list(s.index) == ['mean', 'reference', 'texture'] and (s['n'] == 4).all()
  np.testing.assert_allclose(s.loc['mean', 'value'], mean['change'].mean())
  np.testing.assert_allclose(s.loc['mean', 'final'], change[-1], atol=1e-4)
  assert s.loc['mean', 'low'] <= s.loc['mean', 'value'] <= s.loc['mean', 'high']


def test_fill_check_refuses_what_it_cannot_run():
  data = records([10, 250], [0, 0], 'n')
  with pytest.raises(ValueError, match='fill_from is needed'):
    fill_check.fill_check(NearMean(), data, fills=('texture',))
  with pytest.raises(ValueError, match="unknown fill 'rise'"):
    fill_check.fill_check(NearMean(), data, fills=('rise',))
  with pytest.raises(ValueError, match='no healthy'):
    fill_check.fill_check(NearMean(), records([10], [1], 'p'), fills=('mean',))
