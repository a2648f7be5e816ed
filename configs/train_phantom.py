"""Trains one model on the phantom data set, or on a real one named in the argument.

  cam_jax train --config=configs/train_phantom.py --workdir=runs/resnet_tiny \
      --config.model.name=resnet_tiny
  cam_jax train --config=configs/train_phantom.py:siim --workdir=runs/resnet_siim \
      --config.data.manual_dir=DIR

Arguments: a size, ``tiny`` (seconds) or ``large`` (an accelerator), and/or a data set of
``cam_jax.presets.REAL_DATA`` (``siim``, ``siim_png``, ``nih``, ``chexlocalize``, ``csv``:
prepared from ``config.data.manual_dir`` on first use, and augmented with crops and rotations),
comma-separated: ``:tiny,siim``. Writes into the workdir
``checkpoint/`` (the best epoch by validation ROC-AUC, with ``model.json`` and ``about.json``),
``checkpoint_last/``, ``train_state/`` (what a rerun resumes from), ``train_log.jsonl``,
``tensorboard/`` and ``history.csv``.
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  size, name = presets.check_data_arg(arg)
  c = ml_collections.ConfigDict()
  c.data = presets.data_config(size, name)
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  # init_from: a torchvision / timm state dict (.pth, .safetensors) or big_vision .npz to start
  # from; a head of another width is replaced, RGB first layers are folded to one channel.
  c.model = ml_collections.ConfigDict({'name': 'resnet_tiny', 'num_classes': 1, 'init_from': ''})
  c.train = presets.train_config(size, name)
  return c
