"""Prepares a data set's splits: ``cam_jax prepare --config=configs/study_phantom.py`` (into
``config.data_dir``, by default the shared data directory ``cam_jax.data.cache.data_dir()``)."""

from ml_collections import config_flags

from cam_jax import data
from cam_jax.cli import common

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Any config with a `data` field.',
                                          lock_config=True)


def main(argv):
  del argv
  config = _CONFIG.value
  data_dir = data.cache.data_dir(config.data_dir)
  for split in ('train', 'validation', 'test'):
    source = data.open_split(config.data, split, data_dir)
    labels = [int(source[i]['label']) for i in range(len(source))]
    common.log(f'{split}: {len(source)} records, {sum(labels)} positive, in {data_dir}')
