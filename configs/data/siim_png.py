"""Data set `siim_png`: a PNG conversion of SIIM-ACR (png_images/ + png_masks/ + CSVs, or
train/ test/ masks/).

  cam_jax prepare --config=configs/data/siim_png.py --config.manual_dir=DIR

Arguments: ``:tiny`` (32 px), ``:large`` (512 px); the default is 224 px
(``cam_jax.presets.prepare_config``).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  return presets.prepare_config(arg, 'siim_png')
