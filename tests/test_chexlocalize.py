"""CheXlocalize's Otsu segmentation (Saporta et al. 2022): hand-worked binaries and CheXlocalize's
own steps (cv2 threshold, cv2.findContours, PIL polygons) on CAM-like maps."""

import cv2
import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw

from cam_jax.metrics.localisation import fill_contours, localisation_metrics, otsu_masks
from cam_jax.testing.host_metrics import chexlocalize_fill


def cv2_fill(binary):
  """CheXlocalize's contour step, step by step: every RETR_TREE / CHAIN_APPROX_SIMPLE contour of
  more than one point drawn by PIL as a polygon with outline and fill."""
  contours = cv2.findContours(binary.astype(np.uint8) * 255, cv2.RETR_TREE,
                              cv2.CHAIN_APPROX_SIMPLE)[-2]
  canvas = Image.new('1', binary.shape[::-1])
  draw = ImageDraw.Draw(canvas)
  for contour in contours:
    if len(contour) > 1:
      draw.polygon([(int(x), int(y)) for x, y in contour[:, 0]], outline=1, fill=1)
  return np.array(canvas, bool)


def cv2_segmentation(heat):
  """(plain, segmentation) of CheXlocalize's cam_to_segmentation with Otsu: min-max, uint8,
  cv2.threshold(0, max, THRESH_OTSU), then the contour step."""
  shifted = heat - heat.min()
  u8 = (255 * (shifted / shifted.max())).astype(np.uint8)
  binary = cv2.threshold(u8, 0, int(u8.max()), cv2.THRESH_OTSU)[1] > 0
  return binary, cv2_fill(binary)


def grid(rows):
  return np.array([[c == '#' for c in r] for r in rows.split()])


def check_fill(binary, expected):
  """fill_contours, the scipy host fill and CheXlocalize's cv2 steps all give ``expected``."""
  np.testing.assert_array_equal(cv2_fill(binary), expected)
  np.testing.assert_array_equal(np.asarray(fill_contours(binary)), expected)
  np.testing.assert_array_equal(chexlocalize_fill(binary), expected)


RING = grid("""
.........
.........
..#####..
..#...#..
..#...#..
..#...#..
..#####..
.........
.........""")


def test_ring_around_a_square_lesion():
  lesion = np.zeros((9, 9), bool)
  lesion[2:7, 2:7] = True
  check_fill(RING, lesion)
  out = localisation_metrics(RING.astype(np.float32), lesion)  # uint8 {0, 255}: level 0
  # Filled, the ring is the 5 x 5 lesion; plain, it is its 16 border pixels of 25.
  assert float(out['iou_otsu']) == 1.0 and float(out['dice_otsu']) == 1.0
  assert float(out['iou_otsu_plain']) == pytest.approx(16 / 25)
  assert float(out['dice_otsu_plain']) == pytest.approx(2 * 16 / (16 + 25))


def test_one_pixel_specks_are_dropped():
  # A 3 x 3 blob, a speck inside the image and one in its corner: each speck's contour is a
  # single point, which CheXlocalize drops.
  binary = grid("""
    ........
    .###....
    .###....
    .###....
    ........
    ........
    ......#.
    #.......""")
  blob = np.zeros((8, 8), bool)
  blob[1:4, 1:4] = True
  check_fill(binary, blob)
  out = localisation_metrics(binary.astype(np.float32), blob)
  assert float(out['iou_otsu']) == 1.0
  # Plain: 11 predicted, the 9 of the blob in the mask: IoU 9/11, Dice 18/20.
  assert float(out['iou_otsu_plain']) == pytest.approx(9 / 11)
  assert float(out['dice_otsu_plain']) == pytest.approx(18 / 20)


def test_thin_lines_and_diagonal_pairs_are_kept():
  # Their contours have two points or more (end to end and back), drawn as PIL outlines.
  binary = grid("""
    ........
    .####...
    ........
    ......#.
    .#....#.
    ..#...#.
    ........""")
  check_fill(binary, binary)


def test_holes_are_filled_under_4_connected_background():
  # A blob with a one-pixel and a two-pixel hole: filled whole.
  blob = grid("""
    .......
    .#####.
    .#.###.
    .####..
    .#..##.
    .#####.
    .......""")
  filled = blob.copy()
  filled[2, 2] = filled[4, 2] = filled[4, 3] = True
  check_fill(blob, filled)
  # The ring with a corner pixel missing: its inside touches the outside only diagonally, so
  # (8-connected foreground) it is still a hole; the missing corner stays out.
  corner = RING.copy()
  corner[2, 2] = False
  expected = np.zeros((9, 9), bool)
  expected[2:7, 2:7] = True
  expected[2, 2] = False
  check_fill(corner, expected)
  # A gap in a side opens the inside to the outside: nothing to fill.
  gap = RING.copy()
  gap[2, 4] = False
  check_fill(gap, gap)


def test_islands_in_holes():
  # A speck in a ring's hole is kept (the ring's polygon covers it); a ring in a ring, each
  # with its hole, fills to the outer square.
  speck = np.pad(RING, 1)
  speck[5, 5] = True
  outer = np.zeros((11, 11), bool)
  outer[3:8, 3:8] = True
  check_fill(speck, outer)
  nested = np.zeros((13, 13), bool)
  nested[1:12, 1:12] = True
  nested[2:11, 2:11] = False
  nested[4:9, 4:9] = True
  nested[5:8, 5:8] = False
  nested[6, 6] = True
  full = np.zeros((13, 13), bool)
  full[1:12, 1:12] = True
  check_fill(nested, full)


def cam_like(rng, n, hw):
  """Bilinear-upsampled random grids raised to powers, min-maxed, as CAMs are: several blobs,
  some with holes and specks at the Otsu level."""
  heats = []
  for i in range(n):
    cells = (4, 6, 8, 12)[i % 4]
    g = rng.random((cells, cells)).astype(np.float32) ** (1 + i % 3)
    heat = cv2.resize(g, (hw, hw), interpolation=cv2.INTER_LINEAR)
    heats.append((heat - heat.min()) / (heat.max() - heat.min()))
  return np.stack(heats).astype(np.float32)


def test_random_cam_like_maps_match_chexlocalize_steps():
  rng = np.random.default_rng(11)
  heats = cam_like(rng, 24, 48)
  plain, segmentation = jax.vmap(otsu_masks)(heats)
  yy, xx = np.mgrid[:48, :48]
  masks = np.stack([((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
                    for cy, cx, ry, rx in rng.uniform((10, 10, 4, 4), (38, 38, 16, 16), (24, 4))])
  out = jax.vmap(localisation_metrics)(heats, masks)
  differ = 0
  for i, heat in enumerate(heats):
    ref_plain, ref_segmentation = cv2_segmentation(heat)
    np.testing.assert_array_equal(np.asarray(plain[i]), ref_plain, err_msg=str(i))
    np.testing.assert_array_equal(np.asarray(segmentation[i]), ref_segmentation, err_msg=str(i))
    np.testing.assert_array_equal(chexlocalize_fill(ref_plain), ref_segmentation)
    differ += int((ref_plain != ref_segmentation).any())
    for name, pred in (('iou_otsu', ref_segmentation), ('iou_otsu_plain', ref_plain)):
      iou = (pred & masks[i]).sum() / (pred | masks[i]).sum()
      assert float(out[name][i]) == pytest.approx(iou, abs=1e-6), (name, i)
  assert differ >= 3  # the contour step matters on these maps


def test_bad_shapes_are_named():
  with pytest.raises(ValueError, match='binary must be one'):
    fill_contours(np.zeros((2, 3, 3), bool))
  with pytest.raises(ValueError, match='heat must be one'):
    otsu_masks(np.zeros(9, np.float32))
