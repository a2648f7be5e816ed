"""The peer suite (``cam_jax.bench.peer``): pytorch-grad-cam + Quantus + NumPy and
``cam_jax.score`` give the same numbers in the same run, and the agreement check catches the
least difference that is not a documented one (a tie at a rank cut, an empty mask)."""

import os
import runpy

import jax
import numpy as np
import pandas as pd
import pytest

from cam_jax.metrics import localisation

pytest.importorskip('torch')
pytest.importorskip('quantus')
# pylint: disable=g-import-not-at-top,wrong-import-position
from cam_jax.testing import pytorch_grad_cam_import

try:
  pytorch_grad_cam_import.import_pytorch_grad_cam()
except ImportError as err:
  pytest.skip(f'pytorch-grad-cam not importable ({err})', allow_module_level=True)
from cam_jax.bench import peer, suites

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HW = 16
K = localisation.default_top_k(HW * HW)  # 5
TIED, EMPTY, PLAIN = 0, 1, 2  # images of _maps: four pixels tied at the maximum; no lesion; neither
kernel = jax.jit(jax.vmap(localisation.localisation_metrics))


def _maps(n=6, seed=0):
  """Tie-free upsampled maps in [0, 1] and elliptic masks, except that image TIED has four pixels
  at its maximum, one of them in its mask, and image EMPTY no lesion."""
  rng = np.random.default_rng(seed)
  heat = np.stack([np.kron(rng.random((4, 4)), np.ones((4, 4))) for _ in range(n)])
  heat = heat + 1e-3 * rng.random(heat.shape)
  heat = (heat - heat.min((1, 2), keepdims=True)) / np.ptp(heat, (1, 2), keepdims=True)
  yy, xx = np.mgrid[:HW, :HW]
  masks = np.stack([((yy - cy) / r) ** 2 + ((xx - cx) / r) ** 2 <= 1
                    for cy, cx, r in rng.uniform([4, 4, 2], [11, 11, 4], (n, 3))])
  inside, outside = np.argwhere(masks[TIED])[0], np.argwhere(~masks[TIED])[[0, 40, 80]]
  heat[TIED] *= 0.9
  for y, x in [inside, *outside]:
    heat[TIED, y, x] = 1.0
  masks[EMPTY] = False
  return heat.astype(np.float32), masks


@pytest.fixture(scope='module')
def scored():
  """(maps, masks, the peer's numbers, cam_jax's kernel on the same maps)."""
  heat, masks = _maps()
  theirs = peer.peer_metrics(K)(np.zeros((len(heat), 1, HW, HW), np.float32), heat, masks)
  return heat, masks, theirs, jax.device_get(kernel(heat, masks))


def _failed(rows):
  return [r['quantity'] for r in rows if not r['pass']]


def test_same_maps_agree_but_for_a_tie_and_an_empty_mask(scored):
  heat, masks, theirs, same = scored
  # The documented differences are there: Quantus counts the tie as a hit, cam_jax 1/4 of one,
  # and Quantus gives NaN on the empty mask (PointingGame a hit).
  assert theirs['pointing_game'][TIED] == 1.0 and same['pointing_game'][TIED] == 0.25
  assert np.isnan(theirs['relevance_mass'][EMPTY]) and theirs['pointing_game'][EMPTY] == 1.0
  rows = {r['quantity']: r for r in peer.metric_rows(theirs, same, heat, masks)}
  assert list(rows) == list(peer.METRICS) and not _failed(rows.values())
  assert {r['images'] for r in rows.values()} == {len(heat) - 1}  # the empty mask skipped
  assert rows['pointing_game']['at_a_tie'] == 1 and rows['pointing_game']['max_abs_diff'] == 0.75
  assert all(rows[key]['at_a_tie'] == 0 for key in ('top_k', 'relevance_rank'))
  assert max(rows[key]['max_abs_diff'] for key in peer.METRICS if key != 'pointing_game') < 1e-6


def test_tie_shares_of_four_tied_maxima_one_in_the_mask():
  heat, masks = _maps()
  assert peer.tie_shares(heat[TIED], masks[TIED], 1) == (0.0, 0.25, 1.0)
  assert peer.tie_shares(heat[PLAIN], masks[PLAIN], 1)[0] == peer.tie_shares(
      heat[PLAIN], masks[PLAIN], 1)[2]


@pytest.mark.parametrize('key', peer.METRICS)
@pytest.mark.parametrize('image', [TIED, PLAIN])
def test_agreement_catches_the_least_difference(scored, key, image):
  """cam_jax's value of one image moved by one pixel's share of a rank metric (1 / k), or by
  twice ROUNDING for the others, fails that metric's row and only that one, at a tie too."""
  heat, masks, theirs, same = scored
  k = {'pointing_game': 1, 'top_k': K, 'relevance_rank': int(masks[image].sum())}.get(key)
  step = 1 / k if key in peer.RANKED else 2 * peer.ROUNDING
  changed = {**same, key: np.array(same[key], np.float64)}
  changed[key][image] += step if changed[key][image] < step else -step
  assert _failed(peer.metric_rows(theirs, changed, heat, masks)) == [key]


def test_agreement_fails_on_maps_other_than_the_peers(scored):
  heat, masks, theirs, _ = scored
  moved = jax.device_get(kernel(np.roll(heat, 2, axis=2), masks))
  failed = _failed(peer.metric_rows(theirs, moved, heat, masks))
  assert {'relevance_mass', 'pixel_roc_auc', 'ehr_auc'} <= set(failed), failed


def test_relu_margins_read_the_relus_behind_the_layer_only():
  torch = pytest.importorskip('torch')
  from cam_jax.testing import torch_reference  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  vgg = torch_reference.build('vgg11', num_classes=1, image_size=32, in_channels=1).eval()
  x = torch.randn(3, 1, 32, 32)
  last_relu = f'features.{len(vgg.features) - 2}'  # the default CAM layer, before the last pool
  with torch.no_grad():
    h1 = vgg.classifier[0](torch.flatten(vgg.avgpool(vgg.features(x)), 1))
    h2 = vgg.classifier[3](torch.relu(h1))
  want = np.minimum(*[(h.abs().min(1).values / h.abs().mean(1)).numpy() for h in (h1, h2)])
  np.testing.assert_allclose(torch_reference.relu_margins(vgg, last_relu, x), want, rtol=1e-6)
  resnet = torch_reference.build('resnet18', num_classes=1, image_size=32, in_channels=1).eval()
  assert np.isinf(torch_reference.relu_margins(resnet, 'layer4', x)).all()


def test_no_lesion_is_bad_input(scored):
  heat, masks, theirs, same = scored
  with pytest.raises(ValueError, match='none of the 6 images has a lesion'):
    peer.metric_rows(theirs, same, heat, np.zeros_like(masks))


@pytest.mark.slow
def test_tiny_suite_times_both_ways_and_they_agree(tmp_path):
  config = runpy.run_path(os.path.join(ROOT, 'configs/bench_peer.py'))['get_config']('tiny')
  text = suites.run_suite(config, str(tmp_path), log=lambda m: None)
  table = pd.read_csv(tmp_path / 'bench.csv')
  assert list(table['case']) == [peer.PEER_CASE, peer.OURS_CASE]
  assert table['ratio'][0] == 1.0 and (table['items_per_s'] > 0).all()
  agreement = pd.read_csv(tmp_path / 'agreement.csv')
  assert list(agreement['quantity']) == ['heat map', *peer.METRICS]
  assert agreement['pass'].all(), agreement
  # A real comparison: the maps differ by float rounding only, and lesion images were scored.
  assert 0 < agreement['max_abs_diff'][0] <= peer.MAP_TOLERANCE
  assert (agreement['images'][1:] >= 1).all()
  assert agreement['max_abs_diff_score'][1:].notna().all()
  assert 0 < agreement['peer_metrics_share'][0] < 1
  assert agreement['at_a_tie'][0] == 0  # no ReLU behind resnet18's layer4
  assert '| resnet18 | ' in text and '| model | peer images/s |' in text
