"""grain pipelines over a random-access source of records.

A record is a dict with ``image`` (uint8 (H,W,C)), ``mask`` (bool (H,W)), ``label`` and ``id``.
Training batches are shuffled per epoch and lightly augmented, both seeded by position, so a
restored iterator resumes exactly. Evaluation batches
keep the source order, pad the last batch and carry ``valid`` so padded rows never reach a metric.
"""

from __future__ import annotations

import math

import grain
import numpy as np

from cam_jax.core.errors import BadInput

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def normalise(pixels: np.ndarray) -> np.ndarray:
  """uint8 pixels -> float32 model input ((x/255 - 0.5) / 0.25)."""
  return ((np.asarray(pixels, np.float32) / 255.0) - PIXEL_MEAN) / PIXEL_STD


def denormalise(image: np.ndarray) -> np.ndarray:
  """Model input -> float32 in [0, 1]."""
  return np.clip(np.asarray(image) * PIXEL_STD + PIXEL_MEAN, 0.0, 1.0)


def _example(record: dict) -> dict:
  return {'image': normalise(record['image']), 'mask': np.asarray(record['mask'], bool),
          'label': np.int32(record['label']), 'id': as_text(record['id']), 'valid': np.bool_(True)}


def as_text(value) -> np.str_:
  """A record's string field (bytes from TFDS) as text."""
  return np.str_(value.decode() if isinstance(value, bytes) else value)


def augment(example: dict, rng: np.random.Generator, max_shift: int = 6) -> dict:
  """Random translation (edge-padded, mask moved alike) and brightness/contrast jitter."""
  dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
  image, mask = example['image'], example['mask']
  image = _shift(image, dy, dx, mode='edge')
  mask = _shift(mask, dy, dx, mode='constant')
  image = image * rng.uniform(0.9, 1.1) + rng.uniform(-0.2, 0.2)
  return {**example, 'image': image.astype(np.float32), 'mask': mask}


def _shift(a: np.ndarray, dy: int, dx: int, mode: str) -> np.ndarray:
  h, w = a.shape[:2]
  p = max(abs(dy), abs(dx))
  pad = [(p, p), (p, p)] + [(0, 0)] * (a.ndim - 2)
  padded = np.pad(a, pad, mode=mode)
  return padded[p - dy:p - dy + h, p - dx:p - dx + w]


def steps_per_epoch(num_records: int, batch_size: int) -> int:
  """Full batches per epoch (the incomplete last one is dropped)."""
  return num_records // batch_size


def train_batches(source, *, batch_size: int, seed: int, epochs: int = 1, augmented: bool = True,
                  num_threads: int = 2, process_index: int = 0, process_count: int = 1,
                  augmenter=augment):
  """``epochs`` epochs of shuffled, augmented batches as one grain ``IterDataset``.

  The order and the augmentation are functions of (seed, epoch, position) only, so an iterator
  restored from its saved state (``get_state`` / grain's checkpoint handler) continues exactly.
  Each epoch is a fresh permutation cut to whole global batches of ``batch_size``; with ``P``
  processes, process ``p`` reads rows ``[p * b, (p + 1) * b)`` of every global batch
  (``b = batch_size / P``), and only those, so every process runs the same number of steps and
  the global batch they make together is row for row the one a single process would make.
  ``augmenter(example, rng)``: ``augment`` or one of ``cam_jax.data.augment``'s.
  """
  steps = steps_per_epoch(len(source), batch_size)
  if steps == 0:
    raise BadInput(f'training split has {len(source)} records, fewer than batch size '
                   f'{batch_size}')
  if batch_size % process_count:
    raise BadInput(f'batch size {batch_size} is not divisible by the {process_count} processes')
  ds = grain.MapDataset.source(source).shuffle(seed=seed).slice(slice(0, steps * batch_size))
  ds = ds.map(_example)
  if augmented:
    ds = ds.random_map(augmenter, seed=seed)
  ds = ds.batch(batch_size // process_count, drop_remainder=True)  # lazy: a batch reads its rows
  ds = ds.slice(slice(process_index, None, process_count)).repeat(epochs)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4))


class _Padded:
  """``source`` followed by blank records up to ``length`` (``valid`` False)."""

  def __init__(self, source, length: int):
    self.source, self.length = source, length
    self._blank = None

  def __len__(self):
    return self.length

  def __getitem__(self, i):
    if i < len(self.source):
      return _example(self.source[i])
    if self._blank is None:
      ex = _example(self.source[0])
      self._blank = {'image': np.zeros_like(ex['image']), 'mask': np.zeros_like(ex['mask']),
                     'label': np.int32(0), 'id': np.str_(''), 'valid': np.bool_(False)}
    return self._blank


def eval_batches(source, *, batch_size: int, num_threads: int = 2):
  """Every record exactly once, in source order; the last batch padded, ``valid`` marks real
  rows."""
  if len(source) == 0:
    raise BadInput('evaluation split is empty')
  padded = _Padded(source, math.ceil(len(source) / batch_size) * batch_size)
  ds = grain.MapDataset.source(padded).batch(batch_size)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4))
