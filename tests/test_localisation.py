import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cam_jax.scoring.localisation import (
    FLAG_CONSTANT, FLAG_NO_HEAT, ehr_auc, flag_names, iou_dice, localisation_metrics,
    pointing_game)


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


def test_ehr_auc_hand_computed():
    heat = np.array([[0.05, 0.2, 0.4],
                     [1.0, 0.6, 0.0]], np.float32)
    mask = np.array([[True, True, False],
                     [True, False, False]])
    # 0.05 -> 0; effective values S = [0.2, 0.4, 0.6, 1.0], n = 4, position q*(n-1) = 3q.
    # q:   0    .1   .2   .3   .4   .5   .6   .7   .8   .9   1
    # t:  .20  .26  .32  .38  .44  .50  .56  .64  .76  .88  min(1.0, .99)=.99
    # e.g. q=.4: position 1.2 -> 0.4 + 0.2*(0.6-0.4) = 0.44.
    # Pixels >= t and heat inside the mask (mask holds 0.2 and 1.0):
    #   t=.20:            {.2,.4,.6,1} -> (0.2+1.0)/4 = 0.3
    #   t=.26,.32,.38:    {.4,.6,1}    -> 1.0/3
    #   t=.44,.50,.56:    {.6,1}       -> 1.0/2
    #   t=.64,.76,.88,.99:{1}          -> 1.0/1
    # Trapezoid, dq=0.1: 0.1*(0.3/2 + 3*(1/3) + 3*0.5 + 3*1 + 1/2) = 0.1*6.15 = 0.615
    value, flags = ehr_auc(heat, mask)
    assert value == pytest.approx(0.615, abs=1e-6)
    assert int(flags) == 0
    assert ehr_reference(heat, mask) == pytest.approx(0.615, abs=1e-6)


def test_ehr_auc_zeroes_heat_below_cutoff():
    # S = [0.1005]; t = min(0.1005, 0.99*0.1005=0.0995) = 0.0995 for all q.
    # 0.0996 would pass t, but it is < 0.1 so it is zeroed first: only the
    # unmasked 0.1005 is >= t, ratio 0 everywhere.
    heat = np.array([[0.1005, 0.0996]], np.float32)
    mask = np.array([[False, True]])
    value, flags = ehr_auc(heat, mask)
    assert float(value) == 0.0 and int(flags) == 0


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


@pytest.mark.parametrize('shape', [(4, 4), (5, 7), (8, 8)])
@pytest.mark.parametrize('kind', KINDS)
def test_ehr_auc_matches_numpy_reference(shape, kind):
    rng = np.random.default_rng([*shape, KINDS.index(kind)])
    jitted = jax.jit(ehr_auc)
    for _ in range(5):
        heat, mask = _random_case(rng, shape, kind)
        value, flags = jitted(heat, mask)
        assert float(value) == pytest.approx(ehr_reference(heat, mask), abs=1e-6)
        assert int(flags) == 0


def test_ehr_auc_no_heat():
    heat = np.full((4, 4), 0.05, np.float32)
    heat[0, 0] = 0.09
    value, flags = ehr_auc(heat, np.ones((4, 4), bool))
    assert float(value) == 0.0
    assert int(flags) == FLAG_NO_HEAT


def test_all_zero_map_flags():
    out = localisation_metrics(jnp.zeros((4, 4)), jnp.ones((4, 4), bool))
    assert float(out['ehr_auc']) == 0.0
    assert int(out['flags']) == FLAG_NO_HEAT | FLAG_CONSTANT
    assert flag_names(int(out['flags'])) == 'no_heat|constant'
    assert flag_names(0) == ''


def test_pointing_game_hit_and_miss():
    heat = np.zeros((3, 3), np.float32)
    heat[1, 1] = 1.0
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    assert float(pointing_game(heat, mask)[0]) == 1.0
    assert float(pointing_game(heat, ~mask)[0]) == 0.0
    assert int(pointing_game(heat, mask)[1]) == 0


def test_pointing_game_ties():
    # Four pixels tied at the max, one of them in the mask -> 1/4.
    heat = np.full((4, 4), 0.3, np.float32)
    heat[0, 0] = heat[0, 3] = heat[3, 0] = heat[3, 3] = 1.0
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    mask[1, 1] = True  # inside the mask but not at the max
    value, flags = pointing_game(heat, mask)
    assert float(value) == 0.25 and int(flags) == 0


def test_pointing_game_constant_map():
    value, flags = pointing_game(np.full((3, 3), 0.7, np.float32), np.ones((3, 3), bool))
    assert float(value) == 0.0
    assert int(flags) == FLAG_CONSTANT


def test_iou_dice_hand_case():
    # Predicted (>= 0.5): 3 pixels, 2 of them inside a 4-pixel mask.
    # |A∩M| = 2, |A∪M| = 3 + 4 - 2 = 5 -> IoU 2/5; Dice 2*2/(3+4) = 4/7.
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = heat[0, 1] = heat[3, 3] = 0.8
    heat[2, 2] = 0.49  # below the threshold
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True
    iou, dice = iou_dice(heat, mask)
    assert float(iou) == pytest.approx(2 / 5)
    assert float(dice) == pytest.approx(4 / 7)


def test_iou_dice_empty_is_zero():
    iou, dice = iou_dice(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool))
    assert float(iou) == 0.0 and float(dice) == 0.0


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
    ]
    for heat, mask in degenerate:
        heats.append(heat.astype(np.float32))
        masks.append(mask)
    heats, masks = np.stack(heats), np.stack(masks)

    batched = jax.jit(jax.vmap(localisation_metrics))(heats, masks)
    for key, values in batched.items():
        assert values.shape == (len(heats),)
        assert not np.isnan(np.asarray(values, np.float64)).any(), key
    for i in range(len(heats)):
        single = localisation_metrics(heats[i], masks[i])
        for key in single:
            np.testing.assert_allclose(batched[key][i], single[key], atol=1e-6)
    assert list(np.asarray(batched['flags'][4:])) == [
        FLAG_NO_HEAT | FLAG_CONSTANT, FLAG_CONSTANT, FLAG_NO_HEAT | FLAG_CONSTANT, 0]
