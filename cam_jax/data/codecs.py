"""Mask codecs of the chest X-ray sets: run-length encodings, COCO compressed RLE, polygons and
boxes, each to a boolean (H, W) mask.

Run-length encodings are column-major (the flat index runs down a column first), as in the
SIIM-ACR competition's ``mask_functions.py``. ``relative``: each start counts the pixels since
the end of the previous run, 0-based (SIIM's ``train-rle.csv`` and ``stage_2_train.csv``);
``absolute``: each start is the 0-based flat index itself, strictly increasing; ``absolute1``:
the same, 1-based (the first pixel is 1, as in Kaggle's usual run-length submissions).
``auto`` picks one per file from the rows only some readings make valid, or fails. A bad
encoding raises ``Rejected`` with the reason; the caller quarantines it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cam_jax.core.errors import BadInput

ENCODINGS = ('relative', 'absolute', 'absolute1', 'auto')
READINGS = ENCODINGS[:-1]  # what 'auto' chooses from


class Rejected(Exception):
  """A record cannot be used; ``str(e)`` is the reason a quarantine list shows."""


def parse_rle(text: str) -> tuple[np.ndarray, np.ndarray] | None:
  """``'-1'`` (or blank) -> None; else the (starts, lengths) integer pairs as written."""
  tokens = str(text).split()
  if not tokens or tokens == ['-1']:
    return None
  try:
    values = np.array([int(t) for t in tokens], np.int64)
  except ValueError:
    raise Rejected(f'RLE token is not an integer: {text.strip()[:40]!r}') from None
  if len(values) % 2:
    raise Rejected(f'RLE has an odd number of tokens ({len(values)})')
  starts, lengths = values[0::2], values[1::2]
  if (lengths <= 0).any() or (starts < 0).any():
    raise Rejected('RLE has a negative start or a run length below 1')
  return starts, lengths


def absolute_starts(starts: np.ndarray, lengths: np.ndarray, encoding: str) -> np.ndarray:
  """The 0-based flat start index of every run under ``encoding`` (one of ``READINGS``);
  ``Rejected`` for a start of 0 in a 1-based encoding."""
  if encoding == 'absolute':
    return starts
  if encoding == 'absolute1':
    if (starts < 1).any():
      raise Rejected('RLE start 0 in a 1-based (absolute1) encoding')
    return starts - 1
  ends_before = np.concatenate([[0], np.cumsum(starts + lengths)[:-1]])
  return ends_before + starts


def check_runs(starts: np.ndarray, lengths: np.ndarray, size: int | None) -> None:
  """Raises ``Rejected`` when absolute runs overlap, go backwards or pass ``size`` pixels."""
  if (starts[1:] < starts[:-1] + lengths[:-1]).any():
    raise Rejected('RLE runs overlap or are not in increasing order')
  if size is not None and starts[-1] + lengths[-1] > size:
    raise Rejected(f'RLE run ends at pixel {starts[-1] + lengths[-1]}, past the '
                   f'{size} pixels of the mask')


def fits(runs, encoding: str, size: int | None) -> bool:
  """Whether parsed ``runs`` are valid under ``encoding``."""
  try:
    check_runs(absolute_starts(*runs, encoding), runs[1], size)
  except Rejected:
    return False
  return True


def decide_encoding(rows: list, size: int | None, where: str) -> str:
  """One of ``READINGS`` for a file's parsed rows (None for '-1'): the reading that every row
  valid under only some readings allows (a row valid under none is left to the quarantine).
  ``BadInput`` naming ``where`` (the file) when such rows disagree or more than one reading
  stays possible (relative or absolute, 0- or 1-based): never a silent guess. Only when every
  row has at most one run do relative and absolute read alike, and count as one."""
  possible, informative = set(READINGS), []
  for runs in rows:
    if runs is None:
      continue
    ok = frozenset(e for e in READINGS if fits(runs, e, size))
    if ok and ok != set(READINGS):
      informative.append(ok)
      possible &= ok
  if not possible:
    kinds = sorted({' or '.join(sorted(ok)) for ok in informative})
    raise BadInput(f'{where}: RLE rows disagree on the encoding (some read only as '
                   f'{"; some only as ".join(kinds)}); set the encoding')
  runs = [r for r in rows if r is not None]
  if not runs:
    return 'absolute'  # no row has a run: every reading gives the same (empty) masks
  if all(len(r[0]) == 1 for r in runs) and {'relative', 'absolute'} <= possible:
    possible.discard('relative')  # one run per row: relative and absolute read alike
  if len(possible) > 1:
    left = ', '.join(e for e in READINGS if e in possible)
    raise BadInput(f'{where}: cannot tell the RLE encoding: its rows read validly as any of '
                   f'{left} (what tells them apart: a start of 0 for 0-based, a run that fits '
                   'only when counted from 1 for 1-based, a row only relative reads for '
                   'relative); set the encoding to one of them')
  return possible.pop()


def union_runs(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
  """The union of several rows' absolute runs as one sorted, non-overlapping list."""
  starts = np.concatenate([s for s, _ in runs])
  ends = np.concatenate([s + n for s, n in runs])
  order = np.argsort(starts, kind='stable')
  starts, reach = starts[order], np.maximum.accumulate(ends[order])
  begins = np.flatnonzero(np.concatenate([[True], starts[1:] > reach[:-1]]))
  last = np.concatenate([begins[1:] - 1, [len(starts) - 1]])
  return starts[begins], reach[last] - starts[begins]


def runs_to_mask(starts: np.ndarray, lengths: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Absolute column-major runs -> bool mask of ``shape`` (H, W)."""
  h, w = shape
  check_runs(starts, lengths, h * w)
  flat = np.zeros(h * w + 1, np.int32)
  np.add.at(flat, starts, 1)
  np.add.at(flat, starts + lengths, -1)
  return np.cumsum(flat[:-1]).astype(bool).reshape(w, h).T


def decode_rle(text: str, shape: tuple[int, int], encoding: str) -> np.ndarray:
  """One RLE string -> bool mask (empty for '-1')."""
  runs = parse_rle(text)
  if runs is None:
    return np.zeros(shape, bool)
  return runs_to_mask(absolute_starts(*runs, encoding), runs[1], shape)


def encode_rle(mask: np.ndarray, encoding: str) -> str:
  """Bool mask -> RLE string ('-1' when empty), the inverse of ``decode_rle``."""
  flat = np.concatenate([[False], np.asarray(mask, bool).T.reshape(-1), [False]])
  edges = np.flatnonzero(flat[1:] != flat[:-1])
  starts, ends = edges[0::2], edges[1::2]
  if not len(starts):
    return '-1'
  lengths = ends - starts
  if encoding == 'relative':
    starts = starts - np.concatenate([[0], ends[:-1]])
  elif encoding == 'absolute1':
    starts = starts + 1
  return ' '.join(f'{s} {n}' for s, n in zip(starts, lengths))


def decode_coco_rle(counts: str | bytes, size: tuple[int, int]) -> np.ndarray:
  """COCO compressed RLE (``pycocotools.mask.encode``'s ``counts``) -> bool mask of ``size``.

  The format of cocoapi's ``rleFrString``: each count in 5-bit groups, low first, as characters
  offset by 48, bit 0x20 = more groups follow, 0x10 of the last group = negative; from the third
  count on, each is stored as its difference to the count two before. Counts alternate runs of
  0 and 1, starting with 0, column-major."""
  text = counts.decode() if isinstance(counts, bytes) else str(counts)
  values, p = [], 0
  while p < len(text):
    x, k, more = 0, 0, True
    while more:
      if p >= len(text):
        raise Rejected('COCO RLE counts end in the middle of a number')
      c = ord(text[p]) - 48
      x |= (c & 0x1F) << (5 * k)
      more = bool(c & 0x20)
      p, k = p + 1, k + 1
      if not more and c & 0x10:
        x |= -1 << (5 * k)
    if len(values) > 2:
      x += values[-2]
    values.append(x)
  h, w = int(size[0]), int(size[1])
  runs = np.array(values, np.int64)
  if (runs < 0).any() or runs.sum() != h * w:
    raise Rejected(f'COCO RLE counts cover {runs.sum()} pixels, not the {h}x{w} of its size')
  flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
  return flat.reshape(w, h).T


def polygons_to_mask(polygons, size: tuple[int, int]) -> np.ndarray:
  """Polygons ``[[[x, y], ...], ...]`` in pixel coordinates -> bool mask of ``size`` (H, W),
  each filled with its outline (Pillow's ``ImageDraw.polygon``, as CheXlocalize rasterises its
  annotations)."""
  h, w = int(size[0]), int(size[1])
  canvas = Image.new('1', (w, h), 0)
  draw = ImageDraw.Draw(canvas)
  for poly in polygons:
    points = [(float(x), float(y)) for x, y in poly]
    if len(points) < 3:
      raise Rejected(f'a polygon has {len(points)} points, fewer than 3')
    draw.polygon(points, fill=1, outline=1)
  return np.array(canvas, bool)


def boxes_to_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
  """Boxes ``(x, y, w, h)`` (float pixels, origin top left) -> bool mask of ``shape``: every
  pixel the box overlaps (columns floor(x) .. ceil(x + w) - 1, rows alike), clipped."""
  mask = np.zeros(shape, bool)
  for x, y, w, h in boxes:
    if not (w > 0 and h > 0):
      raise Rejected(f'box {x, y, w, h} has no area')
    c0, r0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    c1, r1 = min(int(np.ceil(x + w)), shape[1]), min(int(np.ceil(y + h)), shape[0])
    if c0 >= c1 or r0 >= r1:
      raise Rejected(f'box {x, y, w, h} lies outside the {shape[0]}x{shape[1]} image')
    mask[r0:r1, c0:c1] = True
  return mask
