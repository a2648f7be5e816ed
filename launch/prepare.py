"""Prepares a data set's splits: ``python -m launch.prepare --config=configs/study_phantom.py
--workdir=DIR`` (written to ``config.data_dir`` or ``DIR/data``)."""

import os

from absl import flags
from ml_collections import config_flags

from cam_jax import data
from launch import common

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Any config with a `data` field.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  config = _CONFIG.value
  data_dir = config.data_dir or os.path.join(_WORKDIR.value, 'data')
  for split in ('train', 'validation', 'test'):
    source = data.open_split(config.data, split, data_dir)
    labels = [int(source[i]['label']) for i in range(len(source))]
    common.log(f'{split}: {len(source)} records, {sum(labels)} positive, in {data_dir}')


if __name__ == '__main__':
  common.run(main)
