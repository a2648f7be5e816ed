"""Data sets by name, each a set of random-access splits of records (see ``pipeline``),
prepared once into the shared data directory (``cache.data_dir``)."""

from __future__ import annotations

from cam_jax.core.errors import BadInput
from cam_jax.data import cache, pipeline
from cam_jax.data.pipeline import denormalise, eval_batches, normalise, train_batches

DATASETS = ('phantom',)


def open_split(data_config, split: str, data_dir: str | None = None):
  """The random-access source of ``split`` of the data set ``data_config.name``.

  ``data_config`` holds the data set's settings (``cam_jax.presets.data_config``); the data
  are prepared on first use under ``data_dir`` (default ``cache.data_dir()``: the user's cache,
  or ``$CAM_JAX_DATA_DIR``), in a directory named by the settings.
  """
  if data_config.name != 'phantom':
    raise BadInput(f'unknown data set {data_config.name!r}; choose one of: {", ".join(DATASETS)}')
  from cam_jax.data import phantom, phantom_tfds  # pylint: disable=g-import-not-at-top
  if split not in phantom_tfds.SPLITS:
    raise BadInput(f'unknown split {split!r}; choose one of: {", ".join(phantom_tfds.SPLITS)}')
  spec = phantom.PhantomSpec(
      image_size=data_config.image_size, positive_rate=data_config.positive_rate,
      tube_rate_pos=data_config.tube_rate_pos, tube_rate_neg=data_config.tube_rate_neg,
      marker_rate_pos=data_config.marker_rate_pos, marker_rate_neg=data_config.marker_rate_neg,
      noise=data_config.noise)
  sizes = {'train': data_config.num_train, 'validation': data_config.num_validation,
           'test': data_config.num_test}
  builder = phantom_tfds.load(spec, sizes, data_config.seed, cache.data_dir(data_dir))
  return builder.as_data_source(split)


__all__ = ['cache', 'open_split', 'train_batches', 'eval_batches', 'normalise', 'denormalise',
           'pipeline']
