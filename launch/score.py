"""Scores a checkpoint's CAMs: ``python -m launch.score --config=configs/score_phantom.py
--workdir=DIR --config.checkpoint=CKPT``."""

import os

from absl import flags
from ml_collections import config_flags

import cam_jax
from cam_jax import data
from launch import common

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Score config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  if not config.checkpoint:
    raise ValueError('set --config.checkpoint to a directory written by launch.train')
  os.makedirs(workdir, exist_ok=True)
  source = data.open_split(config.data, config.split, config.data_dir or
                           os.path.join(workdir, 'data'))
  result = cam_jax.score(config.checkpoint, source, method=config.cam.method,
                         layer=config.cam.layer or None, target=config.cam.target,
                         aug_smooth=config.cam.aug_smooth, eigen_smooth=config.cam.eigen_smooth,
                         batch_size=config.score.batch_size, n_resamples=config.score.n_resamples,
                         seed=config.score.seed)
  result.records.to_csv(os.path.join(workdir, 'records.csv'), index=False)
  result.summary.to_csv(os.path.join(workdir, 'summary.csv'), index=False)
  common.log('\n' + result.summary.to_string(index=False))


if __name__ == '__main__':
  common.run(main)
