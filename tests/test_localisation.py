"""Localisation metrics: hand-worked cases, the host NumPy implementation, sklearn and cv2."""

import cv2
import jax
import numpy as np
import pytest
from sklearn import metrics as skm

from cam_jax.core.flags import FLAG_CONSTANT, FLAG_NO_HEAT, flag_names
from cam_jax.metrics.localisation import (
  THRESHOLDS,
  box_mask,
  checked_top_k,
  default_top_k,
  localisation_metrics,
  otsu_level,
  tuned_threshold,
)
from cam_jax.testing.host_metrics import localisation_metrics_numpy

KEYS = {'ehr_auc', 'pointing_game', 'pointing_game_weighted', 'relevance_mass',
        'relevance_mass_weighted', 'relevance_rank', 'top_k', 'iou', 'dice', 'iou_grid',
        'dice_grid', 'otsu_threshold', 'iou_otsu', 'dice_otsu', 'iou_otsu_plain',
        'dice_otsu_plain', 'pixel_roc_auc', 'pixel_pr_auc', 'mask_fraction', 'flags'}
batched = jax.jit(jax.vmap(localisation_metrics))


def ehr_reference(heat, mask):
  """Literal numpy EHR-AUC: loops over q, np.quantile, np.trapezoid."""
  h = np.asarray(heat, dtype=np.float64).copy()
  h[h < 0.1] = 0.0
  effective = h[h >= 0.1]
  if effective.size == 0:
    return 0.0
  ratios = []
  for k in range(11):
    t = min(np.quantile(effective, k / 10), 0.99 * h.max())
    above = h >= t
    ratios.append(h[above & mask].sum() / above.sum())
  return float(np.trapezoid(ratios, dx=0.1))


# The hand-worked case: 8 pixels, 3 in the mask, a three-way tie at 0.6 that holds one of them.
HEAT = np.array([[1.0, 0.6, 0.6, 0.2],
                 [0.0, 0.6, 0.3, 0.0]], np.float32)
MASK = np.array([[True, True, False, False],
                 [False, False, True, False]])


def test_hand_case_every_metric():
  out = localisation_metrics(HEAT, MASK, top_k=2)
  assert set(out) == KEYS
  expected = {
      # The maximum (1.0) is in the mask; the mask covers 3/8 of the image.
      'pointing_game': 1.0, 'pointing_game_weighted': 1 - 3 / 8, 'mask_fraction': 3 / 8,
      # Heat in the mask 1 + .6 + .3 = 1.9 of 1 + 3 * .6 + .2 + .3 = 3.3; weighted by 8/3.
      'relevance_mass': 1.9 / 3.3, 'relevance_mass_weighted': 1.9 / 3.3 * 8 / 3,
      # K = 3: 1.0 (in), then 2 of the 3 pixels tied at .6, one of which is in: 1 + 2/3 of 3.
      'relevance_rank': (1 + 2 / 3) / 3,
      # k = 2: 1.0 (in), then 1 of the 3 tied at .6: (1 + 1/3) / 2.
      'top_k': (1 + 1 / 3) / 2,
      # heat >= .5: 4 pixels, 2 in the mask: IoU 2 / (4 + 3 - 2), Dice 2 * 2 / (4 + 3).
      'iou': 2 / 5, 'dice': 4 / 7,
      # Positives 1.0, .6, .3 against negatives .6, .6, .2, 0, 0: 1.0 beats 5; .6 beats 3 and
      # ties 2 (+1); .3 beats 3: U = 12 of 15.
      'pixel_roc_auc': 12 / 15,
      # Distinct heat from the top: 1.0 (TP 1 of 1, recall 1/3), .6 (TP 2 of 4, recall 2/3),
      # .3 (TP 3 of 5, recall 1): AP = (1 + 1/2 + 3/5) / 3.
      'pixel_pr_auc': (1 + 0.5 + 0.6) / 3,
      # Effective heat S = [.2, .3, .6, .6, .6, 1]; position 5q:
      # q:  0   .1   .2   .3   .4-.8  .9  1
      # t: .2  .25  .3   .45   .6     .8  min(1, .99) = .99
      # ratio (heat in the mask at >= t over pixels >= t):
      #    1.9/6  1.9/5 (x2)  1.6/4 (x6: .45 ... .6)  1/1 (x2)
      # trapezoid, dq = .1: .1 * (1.9/12 + 2 * .38 + 6 * .4 + 1 + 1/2).
      'ehr_auc': 0.1 * (1.9 / 12 + 2 * 0.38 + 6 * 0.4 + 1 + 0.5),
      # uint8(255 * h): 0 (x2), 51, 76, 153 (x3), 255. Between-class variance
      # (N s1 - S n1)^2 / (n1 n2) with N = 8, S = 841, at the splits after
      # 0: 1682^2/12 = 235760; 51: 2115^2/15 = 298215; 76: 2348^2/16 = 344569;
      # 153: 1199^2/7 = 205372. Best: level 76; uint8 > 76 is the same 4 pixels as heat >= .5,
      # one 8-connected blob without holes, which filling its contour leaves as it is.
      'otsu_threshold': 76 / 255, 'iou_otsu_plain': 2 / 5, 'dice_otsu_plain': 4 / 7,
      'iou_otsu': 2 / 5, 'dice_otsu': 4 / 7,
  }
  for key, value in expected.items():
    assert float(out[key]) == pytest.approx(value, abs=1e-6), key
  # Grid, heat >= t: t <= .2: 6 predicted, 3 in -> IoU 3/6, Dice 6/9; .25, .3: 5 -> 3/5, 6/8;
  # .35 ... .6: 4 -> 2/5, 4/7; .65 ... .95: only 1.0 -> 1/3, 2/4.
  iou = [1 / 2] * 4 + [3 / 5] * 2 + [2 / 5] * 6 + [1 / 3] * 7
  dice = [6 / 9] * 4 + [6 / 8] * 2 + [4 / 7] * 6 + [2 / 4] * 7
  np.testing.assert_allclose(out['iou_grid'], iou, atol=1e-6)
  np.testing.assert_allclose(out['dice_grid'], dice, atol=1e-6)
  assert int(out['flags']) == 0
  assert ehr_reference(HEAT, MASK) == pytest.approx(expected['ehr_auc'], abs=1e-6)
  u8 = (255 * HEAT).astype(np.uint8)
  assert cv2.threshold(u8, 0, 255, cv2.THRESH_OTSU)[0] == 76
  host = localisation_metrics_numpy(HEAT, MASK, top_k=2)
  for key in KEYS:
    np.testing.assert_allclose(host[key], out[key], atol=1e-6, err_msg=key)


def test_degenerate_masks():
  empty = localisation_metrics(HEAT, np.zeros_like(MASK))
  # No positives: every ratio is 0; ROC-AUC is undefined with one class and scores chance.
  for key in KEYS - {'pixel_roc_auc', 'ehr_auc', 'flags', 'otsu_threshold', 'iou_grid',
                     'dice_grid'}:
    assert float(empty[key]) == 0.0, key
  assert float(empty['pixel_roc_auc']) == 0.5 and float(empty['ehr_auc']) == 0.0
  assert not np.any(empty['iou_grid']) and not np.any(empty['dice_grid'])
  full = localisation_metrics(HEAT, np.ones_like(MASK))
  # All pixels positive: precision is 1 at every threshold (sklearn's AP is 1), ROC undefined.
  assert float(full['pixel_pr_auc']) == 1.0 and float(full['pixel_roc_auc']) == 0.5
  assert float(full['relevance_mass']) == pytest.approx(1.0)
  assert float(full['relevance_mass_weighted']) == pytest.approx(1.0)
  assert float(full['relevance_rank']) == 1.0 and float(full['pointing_game']) == 1.0
  assert float(full['pointing_game_weighted']) == 0.0 and float(full['mask_fraction']) == 1.0


def test_ehr_auc_zeroes_heat_below_cutoff():
  # S = [0.1005]; t = min(0.1005, 0.99*0.1005=0.0995) = 0.0995 for all q.
  # 0.0996 would pass t, but it is < 0.1 so it is zeroed first: only the
  # unmasked 0.1005 is >= t, ratio 0 everywhere.
  heat = np.array([[0.1005, 0.0996]], np.float32)
  mask = np.array([[False, True]])
  out = localisation_metrics(heat, mask)
  assert float(out['ehr_auc']) == 0.0 and int(out['flags']) == 0


KINDS = ('uniform', 'sparse', 'one_pixel')


def _random_case(rng, shape, kind):
  heat = rng.random(shape)
  if kind == 'sparse':
    heat = heat ** 4  # most values below 0.1
  heat = ((heat - heat.min()) / (heat.max() - heat.min())).astype(np.float32)
  if kind == 'one_pixel':
    mask = np.zeros(shape, bool)
    mask[rng.integers(shape[0]), rng.integers(shape[1])] = True
  else:
    mask = rng.random(shape) < 0.3
  return heat, mask


@pytest.mark.slow
@pytest.mark.parametrize('shape', [(4, 4), (5, 7), (8, 8)])
def test_ehr_auc_matches_numpy_reference(shape):
  rng = np.random.default_rng(list(shape))
  cases = [_random_case(rng, shape, kind) for kind in KINDS for _ in range(5)]
  out = batched(np.stack([h for h, _ in cases]), np.stack([m for _, m in cases]))
  for i, (heat, mask) in enumerate(cases):
    assert float(out['ehr_auc'][i]) == pytest.approx(ehr_reference(heat, mask), abs=1e-6)
  assert not np.any(out['flags'])


def test_no_heat_and_all_zero_flags():
  heat = np.full((4, 4), 0.05, np.float32)
  heat[0, 0] = 0.09
  out = localisation_metrics(heat, np.ones((4, 4), bool))
  assert float(out['ehr_auc']) == 0.0 and int(out['flags']) == FLAG_NO_HEAT
  out = localisation_metrics(np.zeros((4, 4), np.float32), np.ones((4, 4), bool))
  assert float(out['ehr_auc']) == 0.0
  assert int(out['flags']) == FLAG_NO_HEAT | FLAG_CONSTANT
  assert flag_names(int(out['flags'])) == 'no_heat|constant'
  assert flag_names(0) == ''


def test_pointing_game_hit_miss_ties_and_constant():
  heat = np.zeros((4, 4), np.float32)
  heat[1, 1] = 1.0
  mask = np.zeros((4, 4), bool)
  mask[1, 1] = True
  assert float(localisation_metrics(heat, mask)['pointing_game']) == 1.0
  assert float(localisation_metrics(heat, ~mask)['pointing_game']) == 0.0
  # Four pixels tied at the max, one of them in the mask -> 1/4; weighted by 1 - 2/16.
  heat = np.full((4, 4), 0.3, np.float32)
  heat[0, 0] = heat[0, 3] = heat[3, 0] = heat[3, 3] = 1.0
  mask = np.zeros((4, 4), bool)
  mask[3, 3] = True
  mask[1, 1] = True  # inside the mask but not at the max
  out = localisation_metrics(heat, mask)
  assert float(out['pointing_game']) == 0.25 and int(out['flags']) == 0
  assert float(out['pointing_game_weighted']) == pytest.approx(0.25 * (1 - 2 / 16))
  # A constant map is a miss, flagged; its Otsu binarisation is empty.
  out = localisation_metrics(np.full((4, 4), 0.7, np.float32), np.ones((4, 4), bool))
  assert float(out['pointing_game']) == 0.0 and int(out['flags']) == FLAG_CONSTANT
  assert float(out['otsu_threshold']) == 0.0 and float(out['iou_otsu']) == 0.0
  assert float(out['iou_otsu_plain']) == 0.0


def test_iou_dice_at_half():
  # Predicted (>= 0.5): 3 pixels, 2 of them inside a 4-pixel mask.
  # |A∩M| = 2, |A∪M| = 3 + 4 - 2 = 5 -> IoU 2/5; Dice 2*2/(3+4) = 4/7.
  heat = np.zeros((4, 4), np.float32)
  heat[0, 0] = heat[0, 1] = heat[3, 3] = 0.8
  heat[2, 2] = 0.49  # below the threshold
  mask = np.zeros((4, 4), bool)
  mask[0:2, 0:2] = True
  out = localisation_metrics(heat, mask)
  assert float(out['iou']) == pytest.approx(2 / 5)
  assert float(out['dice']) == pytest.approx(4 / 7)
  out = localisation_metrics(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool))
  assert float(out['iou']) == 0.0 and float(out['dice']) == 0.0


def test_top_k_default_and_bad_input():
  assert default_top_k(128 * 128) == 328 and default_top_k(8) == 1  # round(0.16) -> at least 1
  # Default k = 1 on 8 pixels: the top pixel, 1.0, is in the mask.
  assert float(localisation_metrics(HEAT, MASK)['top_k']) == 1.0
  for bad in (0, 9, 2.0, True):
    with pytest.raises(ValueError, match='top_k'):
      localisation_metrics(HEAT, MASK, top_k=bad)
  with pytest.raises(ValueError, match='heat and mask'):
    localisation_metrics(HEAT, MASK[:, :3])
  with pytest.raises(ValueError, match='heat and mask'):
    localisation_metrics(HEAT[0], MASK[0])
  with pytest.raises(ValueError, match='limited'):
    checked_top_k((4096, 4096), (4096, 4096), None)


def _cam_like(rng, n, hw, quantise=False):
  """Bilinear-upsampled random 8x8 / 16x16 grids, min-maxed, as CAMs are; optionally rounded to
  twentieths so that large tie groups straddle every rank cut and threshold."""
  heats = []
  for i in range(n):
    grid = rng.random((8, 8) if i % 2 else (16, 16)).astype(np.float32) ** (1 + 2 * (i % 3))
    heat = cv2.resize(grid, (hw, hw), interpolation=cv2.INTER_LINEAR)
    heat = (heat - heat.min()) / (heat.max() - heat.min())
    heats.append(np.round(heat * 20) / 20 if quantise else heat)
  yy, xx = np.mgrid[:hw, :hw]
  masks = []
  for _ in range(n):
    cy, cx = rng.uniform(0.2, 0.8, 2) * hw
    ry, rx = rng.uniform(1.5, hw / 3, 2)
    masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
  masks[0] = np.zeros((hw, hw), bool)  # empty
  masks[1] = np.ones((hw, hw), bool)  # full
  return np.stack(heats).astype(np.float32), np.stack(masks)


@pytest.mark.slow
@pytest.mark.parametrize('quantise', [False, True])
def test_device_matches_host_numpy_sklearn(quantise):
  heats, masks = _cam_like(np.random.default_rng(7 + quantise), 24, 32, quantise)
  out = batched(heats, masks)
  for i in range(len(heats)):
    host = localisation_metrics_numpy(heats[i], masks[i])
    # Thresholded metrics (EHR, the grid, Otsu) compare each pixel with a threshold; both
    # implementations form the same float32 thresholds and uint8 levels, so they agree here too,
    # though in general a pixel within rounding of a threshold can move them by a pixel's share.
    for key in KEYS:
      np.testing.assert_allclose(out[key][i], host[key], atol=1e-5, err_msg=f'{key} [{i}]')
    if 0 < masks[i].sum() < masks[i].size:
      assert float(out['pixel_roc_auc'][i]) == pytest.approx(
          skm.roc_auc_score(masks[i].ravel(), heats[i].ravel()), abs=1e-5)
      assert float(out['pixel_pr_auc'][i]) == pytest.approx(
          skm.average_precision_score(masks[i].ravel(), heats[i].ravel()), abs=1e-5)


def _chexlocalize_uint8(heat):
  shifted = heat - heat.min()
  return (255 * (shifted / shifted.max())).astype(np.uint8)


def test_otsu_level_matches_cv2_on_tricky_histograms():
  rng = np.random.default_rng(14)
  maps = []
  for _ in range(300):  # map 136 has two levels whose variances agree to 1e-8 (float32 misorders)
    grid = rng.random((16, 16)).astype(np.float32) ** 3
    maps.append(_chexlocalize_uint8(cv2.resize(grid, (64, 64), interpolation=cv2.INTER_LINEAR)))
  flat = np.zeros(4096, np.uint8)
  maps += [flat, flat + 7, flat + 255]  # constant: cv2 returns 0
  for values in [(0, 255), (3, 7), (100, 101), (0, 1, 2), (10, 20, 30, 40)]:
    maps.append(np.resize(np.array(values, np.uint8), 4096))  # equal counts: exact ties
  maps.append(np.r_[np.full(2048, 40), np.full(1024, 41), np.full(1024, 42)].astype(np.uint8))
  maps.append(rng.integers(0, 256, 4096).astype(np.uint8))
  maps.append(np.clip(rng.normal(128, 30, 4096), 0, 255).astype(np.uint8))
  maps = [m.reshape(64, 64) for m in maps]
  counts = np.stack([np.bincount(m.ravel(), minlength=256) for m in maps])
  ours = np.asarray(jax.jit(jax.vmap(otsu_level))(counts))
  theirs = np.array([cv2.threshold(m, 0, 255, cv2.THRESH_OTSU)[0] for m in maps])
  np.testing.assert_array_equal(ours, theirs)


def test_plain_otsu_through_the_metrics_is_cv2s_binary():
  heats, masks = _cam_like(np.random.default_rng(3), 24, 32)
  heats[2] = 0.7  # constant: CheXlocalize's 0/0 map; we binarise it to nothing
  heats[3] = np.where(np.arange(32)[:, None] < 10, 0.2, 0.9)  # two-valued: uint8 {0, 255}
  out = batched(heats, masks)
  for i in range(len(heats)):
    u8 = _chexlocalize_uint8(heats[i]) if i != 2 else np.zeros((32, 32), np.uint8)
    level, binary = cv2.threshold(u8, 0, 255, cv2.THRESH_OTSU)
    assert float(out['otsu_threshold'][i]) * 255 == pytest.approx(level, abs=1e-3)
    pred, mask = binary > 0, masks[i]
    union = (pred | mask).sum()
    iou = (pred & mask).sum() / union if union else 0.0
    assert float(out['iou_otsu_plain'][i]) == pytest.approx(iou, abs=1e-6), i
  assert float(out['otsu_threshold'][3]) == 0.0  # two values: the lower one, as cv2


def test_box_mask_by_hand():
  boxes = np.array([[1, 0, 3, 2],  # x in [1, 3), y in [0, 2)
                    [3.5, 2.2, 10, 4],  # centres x + .5 >= 3.5 -> x >= 3; y + .5 >= 2.2 -> y >= 2
                    [0, 0, 5, 4]], np.float32)  # everything, but not valid
  expected = np.array([[0, 1, 1, 0, 0],
                       [0, 1, 1, 0, 0],
                       [0, 0, 0, 1, 1],
                       [0, 0, 0, 1, 1]], bool)
  got = box_mask(boxes, np.array([True, True, False]), (4, 5))
  np.testing.assert_array_equal(got, expected)
  assert not np.any(box_mask(np.zeros((0, 4)), np.zeros(0, bool), (4, 5)))
  with pytest.raises(ValueError, match='boxes'):
    box_mask(boxes[:, :3], np.ones(3, bool), (4, 5))
  # Box ground truth goes through the same metrics: the hand case's mask as boxes.
  as_boxes = box_mask(np.array([[0, 0, 2, 1], [2, 1, 3, 2]]), np.ones(2, bool), (2, 4))
  np.testing.assert_array_equal(as_boxes, MASK)


def test_tuned_threshold():
  grid = np.zeros((3, len(THRESHOLDS)))
  grid[:, 4] = [0.5, 0.6, 0.7]  # mean 0.6 at 0.25
  grid[:, 9] = [0.9, 0.3, 0.6]  # mean 0.6 at 0.5: a tie, the lower threshold wins
  assert tuned_threshold(grid) == 0.25
  grid[0, 9] = 0.91
  assert tuned_threshold(grid) == 0.5
  grid = np.vstack([grid, np.full(len(THRESHOLDS), np.nan)])  # an image without a mask
  assert tuned_threshold(grid) == 0.5
  with pytest.raises(ValueError, match='iou_grid'):
    tuned_threshold(grid[:, :5])


@pytest.mark.slow
def test_jit_vmap_matches_per_image_and_no_nan():
  rng = np.random.default_rng(0)
  heats, masks = [], []
  for kind in ['uniform', 'sparse', 'one_pixel', 'uniform']:
    heat, mask = _random_case(rng, (6, 6), kind)
    heats.append(heat)
    masks.append(mask)
  degenerate = [
      (np.zeros((6, 6)), np.ones((6, 6), bool)),  # all zero
      (np.full((6, 6), 0.5), np.zeros((6, 6), bool)),  # constant, empty mask
      (np.full((6, 6), 0.05), rng.random((6, 6)) < 0.5),  # all below 0.1
      (heats[0], np.zeros((6, 6), bool)),  # empty mask
      (np.where(rng.random((6, 6)) < 0.5, -0.0, np.nan), np.ones((6, 6), bool)),  # -0, NaN
  ]
  for heat, mask in degenerate:
    heats.append(heat.astype(np.float32))
    masks.append(mask)
  heats, masks = np.stack(heats), np.stack(masks)

  out = batched(heats, masks)
  assert set(out) == KEYS
  for key, values in out.items():
    assert values.shape == ((len(heats), len(THRESHOLDS)) if 'grid' in key else (len(heats),))
    assert not np.isnan(np.asarray(values, np.float64)).any(), key
  for i in range(len(heats)):
    single = localisation_metrics(heats[i], masks[i])
    for key in single:
      np.testing.assert_allclose(out[key][i], single[key], atol=1e-6)
  assert list(np.asarray(out['flags'][4:])) == [
      FLAG_NO_HEAT | FLAG_CONSTANT, FLAG_CONSTANT, FLAG_NO_HEAT | FLAG_CONSTANT, 0,
      FLAG_NO_HEAT | FLAG_CONSTANT]
