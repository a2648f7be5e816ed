"""Trains one model: ``cam_jax train --config=configs/train_phantom.py --workdir=DIR``; the same
command resumes a run stopped or killed in DIR."""

import os

import pandas as pd
from absl import flags
from ml_collections import config_flags

from cam_jax import data
from cam_jax.cli import common
from cam_jax.core import processes
from cam_jax.models import checkpoint
from cam_jax.train import loop

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Train config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  recipe = checkpoint.recipe(config.model.name, config.model.num_classes, config.data.image_size,
                             config.train.seed)
  train_src, val_src = (data.open_split(config.data, s, config.data_dir)
                        for s in ('train', 'validation'))
  result = loop.train(recipe, config.train, train_src, val_src, init_from=config.model.init_from,
                      workdir=workdir, log=common.log)
  if processes.is_primary():
    pd.DataFrame(result.history).to_csv(os.path.join(workdir, 'history.csv'), index=False)
