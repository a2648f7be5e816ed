"""Data set `chexlocalize`: CheXlocalize's radiologist segmentations (or polygons) of config.task.

  cam_jax prepare --config=configs/data/chexlocalize.py --config.manual_dir=DIR

Arguments: ``:tiny`` (32 px), ``:large`` (512 px); the default is 224 px
(``cam_jax.presets.prepare_config``).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  return presets.prepare_config(arg, 'chexlocalize')
