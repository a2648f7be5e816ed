"""Mask codecs: SIIM's relative RLE and 0- and 1-based absolute RLE against hand-worked strings
and their own encoder, 'auto' deciding only what the rows show, COCO compressed RLE against
pycocotools, polygons and boxes against hand cases."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from cam_jax.core.errors import BadInput
from cam_jax.data import codecs
from cam_jax.data.codecs import Rejected

SHAPE = (4, 3)  # 4 rows, 3 columns: flat column-major index = col * 4 + row


def test_relative_and_absolute_rle_by_hand():
  # pixels 1, 2 (column 0, rows 1-2) and 8, 9, 10 (column 2, rows 0-2)
  want = np.zeros(SHAPE, bool)
  want[1:3, 0] = True
  want[0:3, 2] = True
  np.testing.assert_array_equal(codecs.decode_rle('1 2 5 3', SHAPE, 'relative'), want)
  np.testing.assert_array_equal(codecs.decode_rle('1 2 8 3', SHAPE, 'absolute'), want)
  assert codecs.encode_rle(want, 'relative') == '1 2 5 3'
  assert codecs.encode_rle(want, 'absolute') == '1 2 8 3'


def test_one_based_absolute_rle_by_hand():
  # the same pixels 1, 2 and 8, 9, 10 counted from 1: 2, 3 and 9, 10, 11
  want = np.zeros(SHAPE, bool)
  want[1:3, 0] = True
  want[0:3, 2] = True
  np.testing.assert_array_equal(codecs.decode_rle('2 2 9 3', SHAPE, 'absolute1'), want)
  assert codecs.encode_rle(want, 'absolute1') == '2 2 9 3'
  first = codecs.decode_rle('1 1', SHAPE, 'absolute1')  # pixel 1 is row 0, column 0
  assert first[0, 0] and first.sum() == 1
  last = codecs.decode_rle('11 2', SHAPE, 'absolute1')  # pixels 11, 12: column 2, rows 2-3
  assert last[2, 2] and last[3, 2] and last.sum() == 2
  with pytest.raises(Rejected, match='past the 12 pixels'):
    codecs.decode_rle('11 2', SHAPE, 'absolute')
  with pytest.raises(Rejected, match=r'start 0 in a 1-based \(absolute1\)'):
    codecs.decode_rle('0 2', SHAPE, 'absolute1')


def test_minus_one_is_empty_and_a_run_may_touch_the_last_pixel():
  assert not codecs.decode_rle(' -1', (1024, 1024), 'relative').any()
  assert codecs.encode_rle(np.zeros(SHAPE, bool), 'relative') == '-1'
  last = codecs.decode_rle('10 2', SHAPE, 'relative')
  assert last[3, 2] and last[2, 2] and last.sum() == 2
  with pytest.raises(Rejected, match='past the 12 pixels'):
    codecs.decode_rle('10 3', SHAPE, 'relative')


@pytest.mark.parametrize('encoding', ['relative', 'absolute', 'absolute1'])
def test_decode_inverts_encode_on_random_masks(encoding):
  rng = np.random.default_rng(0)
  for _ in range(20):
    mask = rng.random((37, 29)) < rng.uniform(0.05, 0.6)
    mask[-1, -1] = rng.random() < 0.5
    text = codecs.encode_rle(mask, encoding)
    np.testing.assert_array_equal(codecs.decode_rle(text, mask.shape, encoding), mask)


def test_column_major_is_the_transpose_of_a_row_major_reading():
  mask = np.zeros((1024, 1024), bool)
  mask[10, 500:520] = True  # one row, 20 columns: 20 runs of 1 column-major
  text = codecs.encode_rle(mask, 'relative')
  assert len(text.split()) == 40
  flat = np.zeros(1024 * 1024, bool)  # SIIM's own reading: flat, reshape, transpose
  pos = 0
  tokens = [int(t) for t in text.split()]
  for start, length in zip(tokens[0::2], tokens[1::2]):
    pos += start
    flat[pos:pos + length] = True
    pos += length
  np.testing.assert_array_equal(flat.reshape(1024, 1024).T, mask)


@pytest.mark.parametrize('text, reason', [
    ('1 2 3', 'odd number of tokens'), ('1 x', 'not an integer'), ('1 0', 'run length'),
])
def test_bad_rle_is_rejected_with_its_reason(text, reason):
  with pytest.raises(Rejected, match=reason):
    codecs.parse_rle(text)


def test_overlapping_absolute_runs_are_rejected():
  with pytest.raises(Rejected, match='overlap'):
    codecs.decode_rle('2 4 4 2', SHAPE, 'absolute')


def test_auto_decides_per_file_and_fails_loudly_when_it_cannot():
  size = 1024 * 1024
  relative = [codecs.parse_rle('387620 23 996 33 986 43'), None]  # SIIM: 996 < 387620
  absolute = [codecs.parse_rle('1000 5 900000 5 1040000 5')]  # relative would pass the end
  both = [codecs.parse_rle('100 5 200 5')]
  zero = [codecs.parse_rle('0 5 900000 5')]  # a start of 0: not 1-based
  last = [codecs.parse_rle('1048570 7')]  # ends on pixel 1048576 counted from 1, past it from 0
  assert codecs.decide_encoding(relative + both, size, 'f.csv') == 'relative'
  assert codecs.decide_encoding(absolute + both + zero, size, 'f.csv') == 'absolute'
  assert codecs.decide_encoding(absolute + both + last, size, 'f.csv') == 'absolute1'
  assert codecs.decide_encoding(last + [None], size, 'f.csv') == 'absolute1'
  single = [codecs.parse_rle('0 3'), codecs.parse_rle('5 3')]  # one run each: relative reads
  assert codecs.decide_encoding(single, size, 'f.csv') == 'absolute'  # as absolute does
  assert codecs.decide_encoding([None, None], size, 'f.csv') == 'absolute'  # no runs at all
  with pytest.raises(BadInput, match='f.csv: cannot tell the RLE encoding: its rows read '
                     'validly as any of absolute, absolute1 '):
    codecs.decide_encoding(absolute + both, size, 'f.csv')  # 0- or 1-based: no row tells
  with pytest.raises(BadInput, match='any of absolute, absolute1 '):
    codecs.decide_encoding([codecs.parse_rle('5 3'), None], size, 'f.csv')
  with pytest.raises(BadInput, match='any of relative, absolute, absolute1 '):
    codecs.decide_encoding(both, size, 'f.csv')
  with pytest.raises(BadInput, match='f.csv: RLE rows disagree'):
    codecs.decide_encoding(relative + absolute, size, 'f.csv')
  with pytest.raises(BadInput, match='only as absolute1; some only as relative'):
    codecs.decide_encoding(relative + last, size, 'f.csv')


def test_union_runs_merges_overlaps_and_keeps_order():
  runs = [(np.array([0, 10]), np.array([3, 2])), (np.array([2, 20]), np.array([4, 1]))]
  starts, lengths = codecs.union_runs(runs)
  assert starts.tolist() == [0, 10, 20] and lengths.tolist() == [6, 2, 1]


def test_coco_rle_matches_pycocotools():
  rng = np.random.default_rng(1)
  for h, w in [(7, 5), (64, 48), (320, 390)]:
    for density in (0.0, 0.02, 0.5, 1.0):
      mask = rng.random((h, w)) < density
      if density == 0.02:  # a blob, so long runs get multi-character counts
        mask[h // 4:h // 2, w // 3:w // 2] = True
      rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
      np.testing.assert_array_equal(codecs.decode_coco_rle(rle['counts'], rle['size']), mask)
  with pytest.raises(Rejected, match='cover'):
    codecs.decode_coco_rle(rle['counts'], (h + 1, w))


def test_polygon_and_box_masks_by_hand():
  square = codecs.polygons_to_mask([[[1, 1], [3, 1], [3, 3], [1, 3]]], (5, 6))
  want = np.zeros((5, 6), bool)
  want[1:4, 1:4] = True  # filled with its outline: the corner pixels included
  np.testing.assert_array_equal(square, want)
  box = codecs.boxes_to_mask([(1.5, 0.2, 2.0, 1.0)], (4, 5))  # x 1.5-3.5, y 0.2-1.2
  want = np.zeros((4, 5), bool)
  want[0:2, 1:4] = True
  np.testing.assert_array_equal(box, want)
  with pytest.raises(Rejected, match='outside'):
    codecs.boxes_to_mask([(10, 10, 2, 2)], (4, 5))
