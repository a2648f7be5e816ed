"""Data set `nih`: NIH ChestX-ray14 with BBox_List_2017.csv; boxes of config.finding become masks.

  cam_jax prepare --config=configs/data/nih.py --config.manual_dir=DIR

Arguments: ``:tiny`` (32 px), ``:large`` (512 px); the default is 224 px
(``cam_jax.presets.prepare_config``).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  return presets.prepare_config(arg, 'nih')
