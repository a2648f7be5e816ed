"""grain pipelines over a random-access source of records.

A record is a dict with ``image`` (uint8 (H,W,C)), ``mask`` (bool (H,W)), ``label`` and ``id``.
Images are normalised with the model's own statistics (``model.normalisation``, a
``cam_jax.models.normalisation.Normalisation``): every batch function takes it. Training batches
are shuffled per epoch and lightly augmented, both seeded by position, so a restored iterator
resumes exactly. Evaluation batches keep the source order, pad the last batch and carry
``valid`` so padded rows never reach a metric.
"""

from __future__ import annotations

import functools
import math

import grain
import numpy as np

from cam_jax.core.errors import BadInput
from cam_jax.models import normalisation as normalisation_lib
from cam_jax.models.normalisation import Normalisation


class PixelStatistics:
  """Per-channel mean and (population) std of uint8 images' pixels on [0, 1], accumulated one
  image at a time in exact integer sums, so the result does not depend on the order."""

  def __init__(self):
    self.count, self.total, self.squares = 0, 0, 0

  def add(self, image, record_id='') -> None:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
      raise BadInput(f'record {str(as_text(record_id))!r}: image must be uint8 (H, W, C), got '
                     f'{image.dtype} {image.shape}')
    pixels = image.reshape(-1, image.shape[-1]).astype(np.int64)
    self.count += len(pixels)
    self.total = self.total + pixels.sum(axis=0)
    self.squares = self.squares + (pixels * pixels).sum(axis=0)

  def normalisation(self) -> Normalisation:
    """The statistics as a ``Normalisation`` (BadInput when no pixel was added or a channel is
    constant)."""
    if not self.count:
      raise BadInput('no training images to compute the normalisation from')
    mean = self.total / self.count
    std = np.sqrt(np.maximum(self.squares / self.count - mean * mean, 0.0))
    return normalisation_lib.of((mean / 255.0, std / 255.0), len(mean),
                                'normalisation of the training split')


def _example(record: dict, normalisation: Normalisation) -> dict:
  return {'image': normalisation.normalise(record['image']),
          'mask': np.asarray(record['mask'], bool), 'label': np.int32(record['label']),
          'id': as_text(record['id']), 'valid': np.bool_(True)}


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


def train_batches(source, *, batch_size: int, seed: int, normalisation: Normalisation,
                  epochs: int = 1, augmented: bool = True,
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
  ``normalisation``: the model's (``model.normalisation``).
  """
  steps = steps_per_epoch(len(source), batch_size)
  if steps == 0:
    raise BadInput(f'training split has {len(source)} records, fewer than batch size '
                   f'{batch_size}')
  if batch_size % process_count:
    raise BadInput(f'batch size {batch_size} is not divisible by the {process_count} processes')
  ds = grain.MapDataset.source(source).shuffle(seed=seed).slice(slice(0, steps * batch_size))
  ds = ds.map(functools.partial(_example, normalisation=normalisation))
  if augmented:
    ds = ds.random_map(augmenter, seed=seed)
  ds = ds.batch(batch_size // process_count, drop_remainder=True)  # lazy: a batch reads its rows
  ds = ds.slice(slice(process_index, None, process_count)).repeat(epochs)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4))


class _Padded:
  """``source`` followed by blank records up to ``length`` (``valid`` False)."""

  def __init__(self, source, length: int, normalisation: Normalisation):
    self.source, self.length, self.normalisation = source, length, normalisation
    self._blank = None

  def __len__(self):
    return self.length

  def __getitem__(self, i):
    if i < len(self.source):
      return _example(self.source[i], self.normalisation)
    if self._blank is None:
      ex = _example(self.source[0], self.normalisation)
      self._blank = {'image': np.zeros_like(ex['image']), 'mask': np.zeros_like(ex['mask']),
                     'label': np.int32(0), 'id': np.str_(''), 'valid': np.bool_(False)}
    return self._blank


def eval_batches(source, *, batch_size: int, normalisation: Normalisation,
                 num_threads: int = 2):
  """Every record exactly once, in source order, normalised with ``normalisation`` (the
  model's); the last batch padded, ``valid`` marks real rows."""
  if len(source) == 0:
    raise BadInput('evaluation split is empty')
  padded = _Padded(source, math.ceil(len(source) / batch_size) * batch_size, normalisation)
  ds = grain.MapDataset.source(padded).batch(batch_size)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4))
