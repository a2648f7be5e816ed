"""The streaming scoring driver: fused per-image records, padding, batching, the baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import cam_jax
from cam_jax import cams, data, models
from cam_jax.analysis import summary
from cam_jax.core import flags as flags_lib, mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.metrics import classification, faithfulness, localisation
from cam_jax.scoring import driver

ALL_METRICS = ('localisation', 'deletion_insertion', 'road')
FAST = dict(deletion_steps=2, road_fractions=(0.5,))  # few extra forward passes


def _mesh1():
  return mesh_lib.make_mesh(jax.devices()[:1])


def _metric_columns(records):
  return [c for c in records if c not in ('id', 'label', 'has_mask', 'flags')]


def _faithful(records):
  """The faithfulness columns: summary.FAITHFULNESS_METRICS and the curve points."""
  return [c for c in records if c in summary.FAITHFULNESS_METRICS
          or c.split('@')[0] in driver.CURVES.values()]


@pytest.fixture(scope='module')
def model():
  return models.create('resnet_tiny', image_size=32, seed=0)


@pytest.mark.slow
def test_records_match_a_direct_unfused_computation(model, tiny_splits):
  test = tiny_splits['test']
  result = cam_jax.score(model, test, batch_size=8, mesh=_mesh1(), progress=False,
                         n_resamples=50)
  rec = result.records
  assert len(rec) == len(test) and rec['id'].is_unique
  assert list(rec.columns[:4]) == ['id', 'label', 'has_mask', 'prob'] and rec.columns[-1] == 'flags'
  fn, state, _ = cams.cam_function(model)
  images = model.normalisation.normalise(np.stack([test[i]['image'] for i in range(len(test))]))
  masks = np.stack([test[i]['mask'] for i in range(len(test))])
  raw, logits = fn(state, jnp.asarray(images), jnp.ones(len(test), jnp.int32))
  heat, _ = cams.postprocess(raw, (32, 32))
  np.testing.assert_allclose(rec['prob'], jax.nn.sigmoid(logits[:, 0]), rtol=1e-5)
  for i in range(len(test)):
    m = localisation.localisation_metrics(heat[i], masks[i])
    assert rec['flags'][i] == flags_lib.flag_names(int(m['flags']))  # lesion or not
    if masks[i].any():
      # Thresholded metrics may move by about a pixel's share when the fused and the separate
      # programs round heat differently (different XLA fusions).
      for k in summary.LOCALISATION_METRICS + ('otsu_threshold', 'mask_fraction'):
        np.testing.assert_allclose(rec[k][i], m[k], atol=1e-4, err_msg=k)
      for j, t in enumerate(localisation.THRESHOLDS):
        np.testing.assert_allclose(rec[summary.grid_column('iou', t)][i], m['iou_grid'][j],
                                   atol=1e-4)
    else:
      assert rec.loc[i, _metric_columns(rec)[1:]].isna().all()
  assert list(rec['has_mask']) == list(masks.reshape(len(test), -1).any(1))


@pytest.mark.slow
def test_streamed_in_batches_equals_all_at_once_and_padding_never_counts(model, tiny_splits):
  test = tiny_splits['test']
  kw = dict(mesh=_mesh1(), progress=False, n_resamples=50, metrics=ALL_METRICS, **FAST)
  small = cam_jax.score(model, test, batch_size=5, **kw)  # 5 does not divide 32: padded
  whole = cam_jax.score(model, test, batch_size=len(test), **kw)
  assert len(small.records) == len(whole.records) == len(test)
  assert list(small.records['id']) == [data.pipeline.as_text(test[i]['id'])
                                       for i in range(len(test))]
  columns = _metric_columns(whole.records)
  assert {'deletion_auc', 'insertion_auc', 'road_morf', 'road_lerf'} <= set(columns)
  faithful = _faithful(whole.records)
  heat_metrics = [c for c in columns if c not in faithful]
  # Thresholded metrics may move by a pixel's share when batches round heat differently (2e-7).
  np.testing.assert_allclose(small.records[heat_metrics], whole.records[heat_metrics], atol=1e-4)
  # The faithfulness curves are batch-invariant for the same heat (tests/test_faithfulness.py;
  # ROAD's noise follows the image), but here the heat itself differs by rounding, which
  # reorders near-tied pixels of these 2x2-grid maps: measured up to 5e-3.
  np.testing.assert_allclose(small.records[faithful], whole.records[faithful], atol=2e-2)
  assert np.nanmean(np.abs(small.records[faithful] - whole.records[faithful]).to_numpy()) < 2e-3
  n_lesion = int(whole.records['has_mask'].sum())
  s = small.summary.set_index('metric')
  assert s.loc['accuracy', 'n'] == len(test)
  assert s.loc['deletion_auc', 'n'] == (whole.records['label'] == 1).sum()  # positives only
  assert s.loc['ehr_auc', 'n'] == n_lesion


@pytest.mark.slow
def test_sharded_scoring_equals_one_device(model, tiny_splits):
  test = tiny_splits['test']
  kw = dict(batch_size=16, progress=False, n_resamples=50, metrics=ALL_METRICS, **FAST)
  one = cam_jax.score(model, test, mesh=_mesh1(), **kw).records
  eight = cam_jax.score(model, test, mesh=mesh_lib.make_mesh(), **kw).records
  # Threshold metrics may move by a pixel's share when float rounding differs across devices.
  faithful = _faithful(one)  # near-tied pixel order: see above
  heat_metrics = [c for c in _metric_columns(one) if c not in faithful]
  np.testing.assert_allclose(one[heat_metrics], eight[heat_metrics], atol=1e-4)
  np.testing.assert_allclose(one[faithful], eight[faithful], atol=2e-2)


@pytest.mark.slow
def test_summary_tuned_threshold_and_lesion_size_strata(model, tiny_splits):
  result = cam_jax.score(model, tiny_splits['test'], batch_size=16, mesh=_mesh1(),
                         progress=False, n_resamples=100, tuned_threshold=0.3)
  s = result.summary.set_index('metric')
  for k in classification.CLASSIFICATION_METRICS + summary.LOCALISATION_METRICS + ('iou_tuned',):
    assert s.loc[k, 'low'] <= s.loc[k, 'value'] <= s.loc[k, 'high'], k
  rec = result.records
  lesion = rec[rec['has_mask']]
  assert s.loc['ehr_auc', 'n'] == len(lesion) and s.loc['accuracy', 'n'] == len(rec)
  np.testing.assert_allclose(s.loc['iou_tuned', 'value'], lesion['iou@0.30'].mean())
  # tune_threshold picks the grid column with the highest mean IoU.
  grid = {t: lesion[summary.grid_column('iou', t)].mean() for t in localisation.THRESHOLDS}
  assert summary.tune_threshold(rec) == max(grid, key=lambda t: (grid[t], -t))
  # Terciles of the lesion fraction: equal thirds, ordered, covering every lesion image once.
  by = result.by_size[result.by_size['metric'] == 'ehr_auc'].set_index('stratum')
  assert list(by.index) == list(summary.SIZE_STRATA) and by['n'].sum() == len(lesion)
  assert by['n'].max() - by['n'].min() <= 1
  assert by.loc['small', 'fraction_high'] <= by.loc['medium', 'fraction_low']
  strata = summary.size_strata(rec)
  for name in summary.SIZE_STRATA:
    np.testing.assert_allclose(by.loc[name, 'value'], rec[strata == name]['ehr_auc'].mean())
  with pytest.raises(ValueError, match='THRESHOLDS'):
    summary.summarise(rec, n_resamples=10, tuned_threshold=0.33)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['records.csv', 'records.parquet'])
def test_records_round_trip(model, tiny_splits, tmp_path, name):
  rec = cam_jax.score(model, tiny_splits['test'], batch_size=16, mesh=_mesh1(), progress=False,
                      n_resamples=10).records
  summary.write_records(rec, str(tmp_path / name))
  back = summary.read_records(str(tmp_path / name))
  pd.testing.assert_frame_equal(back, rec, check_dtype=False)
  with pytest.raises(ValueError, match='.csv or .parquet'):
    summary.write_records(rec, str(tmp_path / 'records.txt'))


def test_unknown_metric_group_is_named(model, tiny_splits):
  with pytest.raises(ValueError, match="unknown metric group.*'rise'.*localisation"):
    cam_jax.score(model, tiny_splits['test'], metrics=('rise',), batch_size=16, mesh=_mesh1())


@pytest.mark.slow
def test_random_baseline_is_seeded_and_near_chance(tiny_splits):
  kw = dict(batch_size=8, mesh=_mesh1(), progress=False, n_resamples=50)
  a = cam_jax.random_baseline(tiny_splits['test'], seed=1, **kw).records
  b = cam_jax.random_baseline(tiny_splits['test'], seed=1, **kw).records
  c = cam_jax.random_baseline(tiny_splits['test'], seed=2, **kw).records
  np.testing.assert_array_equal(a['ehr_auc'], b['ehr_auc'])
  assert not np.array_equal(a['ehr_auc'], c['ehr_auc'])
  scored = a[a['has_mask']]
  # Random maps hit a lesion about as often as its share of the image: far from 1.
  assert scored['pointing_game'].mean() < 0.3 and 'prob' not in a
  # Relevance mass of a random map is about the lesion's share of the image.
  assert abs(scored['relevance_mass'].mean() - scored['mask_fraction'].mean()) < 0.05


@pytest.mark.slow
def test_score_accepts_a_checkpoint_directory(model, tiny_splits, tmp_path):
  from cam_jax.models import checkpoint  # pylint: disable=g-import-not-at-top
  checkpoint.save(str(tmp_path / 'ckpt'), checkpoint.recipe('resnet_tiny', 1, 32, 0), model)
  a = cam_jax.score(str(tmp_path / 'ckpt'), tiny_splits['test'], batch_size=16, mesh=_mesh1(),
                    progress=False, n_resamples=20).records
  b = cam_jax.score(model, tiny_splits['test'], batch_size=16, mesh=_mesh1(), progress=False,
                    n_resamples=20).records
  np.testing.assert_allclose(a['ehr_auc'], b['ehr_auc'])


def test_check_metrics_keeps_order():
  assert driver.check_metrics(['road', 'localisation']) == ('road', 'localisation')


@pytest.mark.slow
def test_a_lesion_free_image_keeps_its_flags_beside_its_faithfulness_numbers(model):
  """A non-finite heat map of an image without a lesion is named in ``flags``, so its
  deletion / insertion numbers never appear unflagged."""
  images = np.zeros((4, 32, 32, 1), np.float32)
  images[:2] = np.nan
  batch = {'image': images, 'mask': np.zeros((4, 32, 32), bool), 'label': np.ones(4, np.int32),
           'id': np.array([f'img{i}' for i in range(4)]), 'valid': np.ones(4, bool)}
  rec = cam_jax.score(model, iter([batch]), batch_size=4, mesh=_mesh1(), progress=False,
                      metrics=('localisation', 'deletion_insertion'), deletion_steps=2).records
  assert not rec['has_mask'].any()
  assert all('nonfinite' in f for f in rec['flags'][:2]), list(rec['flags'])
  assert 'nonfinite' not in ''.join(rec['flags'][2:])
  assert rec['deletion_auc'][2:].notna().all()  # NaN images give NaN curves, named by flags
  assert rec['ehr_auc'].isna().all()  # no lesion: no localisation number


def test_healthy_images_get_no_deletion_pass_and_nan_columns(model):
  """Deletion / insertion run on the positives alone; with none, their columns are all NaN."""
  batch = {'image': np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype(np.float32),
           'mask': np.zeros((4, 32, 32), bool), 'label': np.zeros(4, np.int32),
           'id': np.array([f'img{i}' for i in range(4)]), 'valid': np.ones(4, bool)}
  rec = cam_jax.score(model, iter([batch]), batch_size=4, mesh=_mesh1(), progress=False,
                      metrics=('deletion_insertion',), deletion_steps=2).records
  assert set(RISE_COLUMNS) <= set(rec) and rec[list(RISE_COLUMNS)].isna().all().all()
  assert rec['prob'].notna().all() and rec.columns[-1] == 'flags'


@pytest.mark.slow
def test_tune_on_tunes_on_that_data_set_then_scores(model, tiny_splits):
  kw = dict(batch_size=16, mesh=_mesh1(), progress=False, n_resamples=10)
  tuned = cam_jax.score(model, tiny_splits['test'], tune_on=tiny_splits['validation'], **kw)
  expected = summary.tune_threshold(cam_jax.score(model, tiny_splits['validation'],
                                                  **kw).records)
  assert tuned.tuned_threshold == expected
  by_hand = cam_jax.score(model, tiny_splits['test'], tuned_threshold=expected, **kw)
  pd.testing.assert_frame_equal(tuned.records, by_hand.records)
  assert 'iou_tuned' in set(tuned.summary['metric'])
  base = cam_jax.random_baseline(tiny_splits['test'], tune_on=tiny_splits['validation'], **kw)
  assert base.tuned_threshold == summary.tune_threshold(
      cam_jax.random_baseline(tiny_splits['validation'], **kw).records)
  with pytest.raises(BadInput, match='not both'):
    cam_jax.score(model, tiny_splits['test'], tune_on=tiny_splits['validation'],
                  tuned_threshold=0.5, **kw)


RISE_COLUMNS = ('deletion_auc', 'insertion_auc', 'deletion_auc_predicted',
                'insertion_auc_predicted', 'deletion@0', 'deletion@1', 'deletion@2', 'insertion@0',
                'insertion@2')


@pytest.mark.slow
def test_deletion_insertion_on_positives_for_the_positive_and_the_predicted_finding(
    model, tiny_splits):
  """Deletion / insertion columns: NaN on healthy images; on positives, those of a direct
  computation with each target's own heat map and the nearest healthy validation image; the
  +1 columns do not depend on the target the localisation maps explain."""
  test, validation = tiny_splits['test'], tiny_splits['validation']
  kw = dict(batch_size=16, mesh=_mesh1(), progress=False, n_resamples=10, deletion_steps=2,
            metrics=('deletion_insertion',), fill='texture', fill_from=validation)
  rec = cam_jax.score(model, test, **kw).records
  negative_cam = cam_jax.score(model, test, target=-1, **kw).records
  columns = list(RISE_COLUMNS)
  positive = (rec['label'] == 1).to_numpy()
  assert positive.any() and not positive.all()
  assert rec.loc[~positive, columns].isna().all().all()
  assert rec.loc[positive, columns].notna().all().all()
  np.testing.assert_allclose(negative_cam[columns], rec[columns], atol=1e-6)

  images = jnp.asarray(np.stack([model.normalisation.normalise(test[i]['image'])
                                 for i in range(len(test))]))
  reference = faithfulness.nearest_reference(images, jnp.asarray(driver.reference_pool(validation,
                                                                                model.normalisation)))
  heat_fn, state, _ = cams.heat_function(model)
  n = len(test)
  for suffix, target in (('', 1), ('_predicted', cams.PREDICTED)):
    targets = jnp.full((n,), target, jnp.int32)
    direct = faithfulness.deletion_insertion(lambda x: model(x, train=False), images,
                                             heat_fn(state, images, targets)[0], targets,
                                             n_steps=2, fill='texture', reference=reference)
    for key in ('deletion_auc', 'insertion_auc'):  # near-tied pixel order: see above
      np.testing.assert_allclose(rec[f'{key}{suffix}'][positive],
                                 np.asarray(direct[key])[positive], atol=2e-2, err_msg=key)
  # Point 0 of deletion is the unmodified image; the AUC is the trapezoid of the points.
  np.testing.assert_allclose(rec['deletion@0'][positive], rec['prob'][positive], rtol=1e-5)
  points = rec.loc[positive, ['deletion@0', 'deletion@1', 'deletion@2']].to_numpy()
  np.testing.assert_allclose((points[:, 0] / 2 + points[:, 1] + points[:, 2] / 2) / 2,
                             rec['deletion_auc'][positive], atol=1e-6)


def test_fill_and_fill_from_go_together(model, tiny_splits):
  kw = dict(batch_size=16, mesh=_mesh1(), metrics=('deletion_insertion',))
  with pytest.raises(ValueError, match="'reference' and 'texture' need fill_from"):
    cam_jax.score(model, tiny_splits['test'], fill='texture', **kw)
  with pytest.raises(ValueError, match="got fill 'rise' with fill_from set"):
    cam_jax.score(model, tiny_splits['test'], fill_from=tiny_splits['validation'], **kw)
  with pytest.raises(ValueError, match='no healthy'):
    driver.reference_pool([tiny_splits['test'][i] for i in range(len(tiny_splits['test']))
                           if tiny_splits['test'][i]['label'] == 1], model.normalisation)
