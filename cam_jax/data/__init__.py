"""Data sets by name, each a set of random-access splits of records (see ``pipeline``),
prepared once into the shared data directory (``cache.data_dir``)."""

from __future__ import annotations

import numpy as np

from cam_jax.core.errors import BadInput
from cam_jax.data import augment, cache, pipeline
from cam_jax.data.pipeline import eval_batches, train_batches
from cam_jax.data.sources import SOURCES

DATASETS = ('phantom',) + SOURCES
SPLITS = ('train', 'validation', 'test')


def open_split(data_config, split: str, data_dir: str | None = None):
  """The random-access source of ``split`` of the data set ``data_config.name``.

  ``data_config`` holds the data set's settings (``cam_jax.presets.data_config``); the data
  are prepared on first use under ``data_dir`` (default ``cache.data_dir()``: the user's cache,
  or ``$CAM_JAX_DATA_DIR``), in a directory named by the settings.
  """
  if data_config.name not in DATASETS:
    raise BadInput(f'unknown data set {data_config.name!r}; choose one of: {", ".join(DATASETS)}')
  if split not in SPLITS:
    raise BadInput(f'unknown split {split!r}; choose one of: {", ".join(SPLITS)}')
  if data_config.name != 'phantom':
    from cam_jax.data import real_tfds  # pylint: disable=g-import-not-at-top
    return real_tfds.load(data_config, cache.data_dir(data_dir))[0].as_data_source(split)
  from cam_jax.data import phantom_tfds  # pylint: disable=g-import-not-at-top
  builder = phantom_tfds.load(phantom_spec(data_config), _phantom_sizes(data_config),
                              data_config.seed, cache.data_dir(data_dir))
  return builder.as_data_source(split)


def phantom_spec(data_config):
  """The ``phantom.PhantomSpec`` of a phantom data config (``cam_jax.presets.data_config``)."""
  if data_config.name != 'phantom':
    raise BadInput(f'data set {data_config.name!r} is not the phantom: it has no generator '
                   'settings')
  from cam_jax.data import phantom  # pylint: disable=g-import-not-at-top
  return phantom.PhantomSpec(
      image_size=data_config.image_size, positive_rate=data_config.positive_rate,
      tube_rate_pos=data_config.tube_rate_pos, tube_rate_neg=data_config.tube_rate_neg,
      marker_rate_pos=data_config.marker_rate_pos, marker_rate_neg=data_config.marker_rate_neg,
      noise=data_config.noise, lesion_contrast=data_config.lesion_contrast)


def _phantom_sizes(data_config) -> dict[str, int]:
  return {'train': data_config.num_train, 'validation': data_config.num_validation,
          'test': data_config.num_test}


def tube_masks(data_config, record_ids):
  """bool (N,H,W): the chest-drain tube's pixels (``phantom.tube_masks``) of the phantom
  records ``record_ids`` (their ``id`` s, any split) of the data set ``data_config``; all False
  for an image without a tube. Every split draws from the config's one seed."""
  from cam_jax.data import phantom, phantom_tfds  # pylint: disable=g-import-not-at-top
  spec = phantom_spec(data_config)
  indices = np.array([phantom_tfds.record_index(pipeline.as_text(i)) for i in record_ids],
                     np.int64)
  total = sum(_phantom_sizes(data_config).values())
  if (indices >= total).any():
    raise BadInput(f'record {record_ids[int(np.argmax(indices >= total))]!r} is not one of the '
                   f'{total} images of this phantom data set')
  return phantom.tube_masks(spec, data_config.seed, indices)


def prepare(data_config, data_dir: str | None = None) -> dict:
  """Prepares every split of ``data_config``'s data set (a no-op when it is there) and returns
  its summary: counts per split and label, with masks; for a real source also duplicates and
  quarantine counts by reason, and ``path`` (where ``splits.csv`` and ``quarantine.csv`` are)."""
  if data_config.name == 'phantom':
    out = {'splits': {}}
    for split in SPLITS:
      source = open_split(data_config, split, data_dir)
      labels = [int(source[i]['label']) for i in range(len(source))]
      out['splits'][split] = {'records': len(source), 'positive': sum(labels),
                              'negative': len(labels) - sum(labels), 'with_mask': sum(labels)}
    return out
  if data_config.name not in DATASETS:
    raise BadInput(f'unknown data set {data_config.name!r}; choose one of: {", ".join(DATASETS)}')
  from cam_jax.data import real_tfds  # pylint: disable=g-import-not-at-top
  builder, summary, fresh = real_tfds.load(data_config, cache.data_dir(data_dir))
  return {**summary, 'path': str(builder.data_dir), 'fresh': fresh}


__all__ = ['augment', 'cache', 'open_split', 'phantom_spec', 'prepare', 'train_batches',
           'eval_batches', 'pipeline', 'tube_masks']
