"""The streaming scoring driver: fused per-image records, padding, batching, the baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cam_jax
from cam_jax import cams, data, models
from cam_jax.scoring import localisation
from cam_jax.train import mesh as mesh_lib


def _mesh1():
  return mesh_lib.make_mesh(jax.devices()[:1])


@pytest.fixture(scope='module')
def model():
  return models.create('resnet_tiny', image_size=32, seed=0)


def test_records_match_a_direct_unfused_computation(model, tiny_splits):
  test = tiny_splits['test']
  result = cam_jax.score(model, test, batch_size=8, mesh=_mesh1(), progress=False,
                         n_resamples=50)
  rec = result.records
  assert len(rec) == len(test) and rec['id'].is_unique
  fn, state, _ = cams.cam_function(model)
  images = np.stack([data.normalise(test[i]['image']) for i in range(len(test))])
  masks = np.stack([test[i]['mask'] for i in range(len(test))])
  raw, logits = fn(state, jnp.asarray(images), jnp.ones(len(test), jnp.int32))
  heat, _ = cams.postprocess(raw, (32, 32))
  np.testing.assert_allclose(rec['prob'], jax.nn.sigmoid(logits[:, 0]), rtol=1e-5)
  for i in range(len(test)):
    if masks[i].any():
      m = localisation.localisation_metrics(heat[i], masks[i])
      # Thresholded metrics may move by about a pixel's share when the fused and the separate
      # programs round heat differently (different XLA fusions).
      for k in ('ehr_auc', 'pointing_game', 'iou', 'dice'):
        np.testing.assert_allclose(rec[k][i], m[k], atol=1e-4)
      assert rec['flags'][i] == localisation.flag_names(int(m['flags']))
    else:
      assert np.isnan(rec['ehr_auc'][i]) and rec['flags'][i] == ''
  assert list(rec['has_mask']) == list(masks.reshape(len(test), -1).any(1))


def test_streamed_in_batches_equals_all_at_once_and_padding_never_counts(model, tiny_splits):
  test = tiny_splits['test']
  small = cam_jax.score(model, test, batch_size=5, mesh=_mesh1(), progress=False, n_resamples=50)
  whole = cam_jax.score(model, test, batch_size=len(test), mesh=_mesh1(), progress=False,
                        n_resamples=50)
  assert len(small.records) == len(whole.records) == len(test)  # 5 does not divide 32: padded
  np.testing.assert_allclose(small.records['prob'], whole.records['prob'], rtol=1e-5)
  for k in ('ehr_auc', 'pointing_game', 'iou', 'dice'):  # thresholded: see above
    np.testing.assert_allclose(small.records[k], whole.records[k], atol=1e-4)
  np.testing.assert_allclose(small.summary['value'], whole.summary['value'], atol=1e-4)


def test_sharded_scoring_equals_one_device(model, tiny_splits):
  test = tiny_splits['test']
  one = cam_jax.score(model, test, batch_size=16, mesh=_mesh1(), progress=False, n_resamples=50)
  eight = cam_jax.score(model, test, batch_size=16, mesh=mesh_lib.make_mesh(), progress=False,
                        n_resamples=50)
  np.testing.assert_allclose(one.records['prob'], eight.records['prob'], rtol=1e-5)
  # Threshold metrics may move by a pixel's share when float rounding differs across devices.
  for k in ('ehr_auc', 'pointing_game', 'iou', 'dice'):
    np.testing.assert_allclose(one.records[k], eight.records[k], atol=1e-4)


def test_summary_has_each_metric_with_a_ci(model, tiny_splits):
  s = cam_jax.score(model, tiny_splits['test'], batch_size=16, mesh=_mesh1(), progress=False,
                    n_resamples=100).summary.set_index('metric')
  for k in ('accuracy', 'roc_auc', 'ehr_auc', 'pointing_game', 'iou', 'dice'):
    assert s.loc[k, 'low'] <= s.loc[k, 'value'] <= s.loc[k, 'high']
  n_lesion = sum(bool(tiny_splits['test'][i]['mask'].any()) for i in range(32))
  assert s.loc['ehr_auc', 'n'] == n_lesion and s.loc['accuracy', 'n'] == 32


def test_random_baseline_is_seeded_and_near_chance(tiny_splits):
  a = cam_jax.random_baseline(tiny_splits['test'], seed=1, batch_size=8, mesh=_mesh1(),
                              progress=False, n_resamples=50).records
  b = cam_jax.random_baseline(tiny_splits['test'], seed=1, batch_size=8, mesh=_mesh1(),
                              progress=False, n_resamples=50).records
  c = cam_jax.random_baseline(tiny_splits['test'], seed=2, batch_size=8, mesh=_mesh1(),
                              progress=False, n_resamples=50).records
  np.testing.assert_array_equal(a['ehr_auc'], b['ehr_auc'])
  assert not np.array_equal(a['ehr_auc'], c['ehr_auc'])
  scored = a[a['has_mask']]
  # Random maps hit a lesion about as often as its share of the image: far from 1.
  assert scored['pointing_game'].mean() < 0.3 and 'prob' not in a


def test_score_accepts_a_checkpoint_directory(model, tiny_splits, tmp_path):
  from cam_jax.train import checkpoint, loop  # pylint: disable=g-import-not-at-top
  checkpoint.save(str(tmp_path / 'ckpt'), loop.recipe('resnet_tiny', 1, 32, 0), model)
  a = cam_jax.score(str(tmp_path / 'ckpt'), tiny_splits['test'], batch_size=16, mesh=_mesh1(),
                    progress=False, n_resamples=20).records
  b = cam_jax.score(model, tiny_splits['test'], batch_size=16, mesh=_mesh1(), progress=False,
                    n_resamples=20).records
  np.testing.assert_allclose(a['ehr_auc'], b['ehr_auc'])
