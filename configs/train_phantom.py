"""Trains one model on the phantom data set.

  python -m launch.train --config=configs/train_phantom.py --workdir=runs/resnet_tiny \
      --config.model.name=resnet_tiny

Arguments: ``:tiny`` (seconds), ``:large`` (an accelerator). Writes ``checkpoint/`` (orbax, with
``model.json``) and ``history.csv`` into the workdir.
"""

import ml_collections

from configs import phantom_common


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = phantom_common.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.data = phantom_common.data_config(arg)
  c.data_dir = ''  # default: <workdir>/data
  c.model = ml_collections.ConfigDict({'name': 'resnet_tiny', 'num_classes': 1})
  c.train = phantom_common.train_config(arg)
  return c
