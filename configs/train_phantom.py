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
  # init_from: a torchvision / timm state dict (.pth, .safetensors) or big_vision .npz to start
  # from; a head of another width is replaced, RGB first layers are folded to one channel.
  c.model = ml_collections.ConfigDict({'name': 'resnet_tiny', 'num_classes': 1, 'init_from': ''})
  c.train = phantom_common.train_config(arg)
  return c
