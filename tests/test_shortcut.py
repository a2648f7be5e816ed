"""The phantom's tube masks and the shortcut check: heat on the tube against heat on the lesion."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from cam_jax import cams, data, models
from cam_jax.analysis import statistics
from cam_jax.core.errors import BadInput
from cam_jax.data import phantom, phantom_tfds
from cam_jax.scoring import shortcut

TUBES = phantom.PhantomSpec(image_size=64, tube_rate_pos=1.0, tube_rate_neg=1.0)


def _render_with_tube(params, on: bool):
  return phantom.render(TUBES, dict(params, tube=np.full(len(params['tube']), on)))[0]


def test_tube_mask_is_exactly_where_the_tube_changes_an_unclipped_image():
  idx = np.arange(30, 50)
  params = phantom.sample_params(TUBES, 4, idx)
  # exposure that never clips and no gamma: the tube's term reaches the pixel unchanged
  params.update(gain=np.full(len(idx), 0.5, np.float32), gamma=np.ones(len(idx), np.float32))
  changed = _render_with_tube(params, True) != _render_with_tube(params, False)
  masks = phantom.tube_masks(TUBES, 4, idx)
  assert masks.any(axis=(1, 2)).all()
  np.testing.assert_array_equal(masks, changed)


def test_tube_mask_covers_the_change_of_the_real_image_up_to_clipping():
  idx = np.arange(30, 50)
  params = phantom.sample_params(TUBES, 4, idx)
  with_tube = _render_with_tube(params, True)
  changed = with_tube != _render_with_tube(params, False)
  masks = phantom.tube_masks(TUBES, 4, idx)
  assert not (changed & ~masks).any(), 'the tube changed pixels outside its mask'
  # mask pixels the tube leaves as they were are clipped in both renders: to 1, or to 0 where
  # the tube crosses the dark air outside the body
  assert np.isin(with_tube[masks & ~changed], [0.0, 1.0]).all()
  assert changed[masks].mean() > 0.95


def test_tube_masks_follow_the_tube_draw_and_are_empty_without_one():
  spec = phantom.PhantomSpec(image_size=64, tube_rate_pos=0.6, tube_rate_neg=0.3)
  drawn = phantom.generate(spec, seed=1, start=10, count=40)['tube']
  assert 0 < drawn.sum() < 40
  masks = phantom.tube_masks(spec, 1, np.arange(10, 50))
  np.testing.assert_array_equal(masks.any(axis=(1, 2)), drawn)
  assert not phantom.tube_masks(phantom.PhantomSpec(image_size=64), 1, np.arange(10)).any()
  assert phantom.tube_masks(spec, 1, np.arange(0)).shape == (0, 64, 64)


@pytest.fixture(scope='module')
def tube_config():
  from cam_jax import presets  # pylint: disable=g-import-not-at-top
  config = presets.data_config('tiny')
  config.tube_rate_pos, config.tube_rate_neg = 1.0, 0.5
  return config


@pytest.fixture(scope='module')
def tube_test(tube_config, data_dir):
  return data.open_split(tube_config, 'test', data_dir)


def test_tube_masks_of_records_match_their_stored_images_and_flags(tube_config, tube_test):
  spec = data.phantom_spec(tube_config)
  records = [tube_test[i] for i in range(len(tube_test))]
  masks = data.tube_masks(tube_config, [r['id'] for r in records])
  np.testing.assert_array_equal(masks.any(axis=(1, 2)), [bool(r['tube']) for r in records])
  assert 0 < masks.any(axis=(1, 2)).sum() < len(records)
  for record, mask in zip(records, masks):  # the stored pixels differ from a tube-free render
    index = phantom_tfds.record_index(data.pipeline.as_text(record['id']))  # only on the tube
    params = phantom.sample_params(spec, tube_config.seed, [index])
    without = phantom.render(spec, dict(params, tube=np.zeros(1, bool)))[0][0]
    changed = record['image'][..., 0] != np.round(without * 255)
    assert not (changed & ~mask).any()
    assert changed.any() == bool(record['tube'])


@pytest.mark.parametrize('record_id, message', [
    ('phantom-test-12-3', 'not a phantom record id'), ('siim-test-0000001', 'not a phantom'),
    ('phantom-val-0000001', 'not a phantom'), ('phantom-test-9999999', 'not one of the 128')])
def test_tube_masks_reject_foreign_record_ids(tube_config, record_id, message):
  with pytest.raises(BadInput, match=message):
    data.tube_masks(tube_config, [record_id])


def test_tube_masks_need_the_phantom(tube_config):
  other = tube_config.copy_and_resolve_references()
  other.name = 'siim'
  with pytest.raises(BadInput, match="'siim' is not the phantom"):
    data.tube_masks(other, ['phantom-test-0000001'])


def test_heat_densities_on_a_hand_worked_map():
  heat = np.array([[0.0, 0.2, 0.4, 0.6],
                   [0.1, 0.3, 0.5, 0.7],
                   [0.8, 0.9, 1.0, 0.0],
                   [0.0, 0.0, 0.0, 0.0]], np.float32)
  tube = np.zeros((4, 4), bool)
  tube[0, :] = True  # the top row; its pixel (0, 3) is also lesion, so it counts as lesion only
  lesion = np.zeros((4, 4), bool)
  lesion[0, 3] = lesion[1, 2:] = True
  tube_heat, lesion_heat = shortcut.heat_densities(heat, tube, lesion)
  np.testing.assert_allclose(tube_heat, (0.0 + 0.2 + 0.4) / 3, rtol=1e-6)
  np.testing.assert_allclose(lesion_heat, (0.6 + 0.5 + 0.7) / 3, rtol=1e-6)
  # a batch of two; the second has no tube outside its lesion, and no lesion
  both = shortcut.heat_densities(np.stack([heat, heat]), np.stack([tube, lesion]),
                                 np.stack([lesion, np.zeros((4, 4), bool)]))
  np.testing.assert_allclose(both[0], [(0.0 + 0.2 + 0.4) / 3, (0.6 + 0.5 + 0.7) / 3], rtol=1e-6)
  assert float(both[1][0]) == pytest.approx((0.6 + 0.5 + 0.7) / 3) and np.isnan(both[1][1])
  assert np.isnan(shortcut.heat_densities(heat, lesion, lesion)[0])


def test_shortcut_records_match_heat_maps_computed_in_one_unsharded_call(tube_config, tube_test):
  model = models.create('vgg_tiny', image_size=32, seed=3)
  records = shortcut.shortcut_records(model, tube_test, tube_config, batch_size=24)  # 1 padded
  assert list(records.columns) == shortcut.COLUMNS and len(records) == len(tube_test)
  recs = [tube_test[i] for i in range(len(tube_test))]
  images = model.normalisation.normalise(np.stack([r['image'] for r in recs]))
  heat_fn, state, _ = cams.heat_function(model)
  heats = np.asarray(heat_fn(state, jnp.asarray(images), jnp.ones((len(recs),), jnp.int32))[0])
  tubes = data.tube_masks(tube_config, [r['id'] for r in recs])
  for record, heat, tube, (_, row) in zip(recs, heats, tubes, records.iterrows()):
    assert row['id'] == data.pipeline.as_text(record['id'])
    assert row['has_tube'] == bool(record['tube']) and row['label'] == record['label']
    tube &= ~record['mask']
    expect_tube = heat[tube].mean() if tube.any() else np.nan
    expect_lesion = heat[record['mask']].mean() if record['mask'].any() else np.nan
    np.testing.assert_allclose([row['tube_heat'], row['lesion_heat']],
                               [expect_tube, expect_lesion], rtol=1e-4, atol=1e-6)
    assert row['tube_over_lesion'] == (expect_tube > expect_lesion)
  assert (records['tube_heat'].notna() & records['lesion_heat'].notna()).sum() >= 5


def _records(over, flags=None, ids=None):
  n = len(over)
  return pd.DataFrame({
      'id': ids or [f'r{i}' for i in range(n)], 'label': 1, 'has_mask': True, 'has_tube': True,
      'tube_heat': np.where(over, 0.6, 0.2), 'lesion_heat': 0.4, 'tube_over_lesion': over,
      'flags': flags or [''] * n})


def test_share_summary_counts_scored_images_with_a_wilson_interval():
  # 81 of 263 (Newcombe, Stat. Med. 1998, Table I: Wilson 0.2553 - 0.3662), plus a flagged map
  # and an image without a tube, both left out
  records = _records([True] * 81 + [False] * 182 + [True])
  records.loc[263, 'flags'] = 'constant'
  extra = _records([False]).assign(id='no tube', has_tube=False, tube_heat=np.nan)
  summary = shortcut.share_summary(pd.concat([records, extra], ignore_index=True))
  assert (summary['n_images'], summary['n_flagged'], summary['n'], summary['over']) == (
      264, 1, 263, 81)
  assert summary['share'] == pytest.approx(81 / 263)
  assert (round(summary['low'], 4), round(summary['high'], 4)) == (0.2553, 0.3662)
  with pytest.raises(BadInput, match='tube_rate_pos'):
    shortcut.share_summary(extra)
  with pytest.raises(BadInput, match='tube_heat'):
    shortcut.share_summary(records.drop(columns='tube_heat'))


def test_wilson_and_newcombe_intervals_match_the_published_examples():
  # Newcombe 1998: single proportions (Table I) and differences (method 10, Table II)
  for (k, n), expected in {(15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                           (1, 29): (0.0061, 0.1718)}.items():
    assert tuple(round(v, 4) for v in statistics.wilson_interval(k, n)) == expected
  for args, expected in {(56, 70, 48, 80): (0.2, 0.0524, 0.3339),
                         (9, 10, 3, 10): (0.6, 0.1705, 0.8090),
                         (5, 56, 0, 29): (0.0893, -0.0381, 0.1926)}.items():
    assert tuple(round(v, 4) for v in statistics.difference_interval(*args)) == expected
  with pytest.raises(ValueError, match='successes'):
    statistics.wilson_interval(3, 0)


def test_compare_shares_fisher_and_paired_mcnemar_by_hand():
  a = _records([True, True, True, False])
  b = _records([True, False, False, False])
  out = shortcut.compare_shares(a, b)
  assert (out['share_a'], out['share_b'], out['difference']) == (0.75, 0.25, 0.5)
  assert out['p_fisher'] == pytest.approx(34 / 70)  # (1 + 16 + 16 + 1) / C(8, 4)
  assert out['n_paired'] == 4 and out['p_mcnemar'] == pytest.approx(0.5)  # 2 of 2: 2 * 1/4
  assert out['low'] < 0.5 < out['high']
  for side, successes in (('a', 3), ('b', 1)):  # each share's own Wilson interval, of 4 images
    assert (out[f'low_{side}'], out[f'high_{side}']) == pytest.approx(
        statistics.wilson_interval(successes, 4))
    assert out[f'n_{side}'] == 4
  disjoint = shortcut.compare_shares(a, _records([True] * 4, ids=list('wxyz')))
  assert disjoint['n_paired'] == 0 and np.isnan(disjoint['p_mcnemar'])
  assert shortcut.compare_shares(a, a)['p_mcnemar'] == 1.0
