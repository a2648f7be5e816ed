"""Data set `csv`: your own folder: labels.csv with image, label and optionally
mask, rle, boxes, patient_id, split.

  cam_jax prepare --config=configs/data/csv.py --config.manual_dir=DIR

Arguments: ``:tiny`` (32 px), ``:large`` (512 px); the default is 224 px
(``cam_jax.presets.prepare_config``).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  return presets.prepare_config(arg, 'csv')
