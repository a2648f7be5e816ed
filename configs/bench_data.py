"""Benchmarks of the real-data path: preparing (1024 px JPEG DICOM decoded and resized, images/s
per core) and the training pipeline (read + augment + batch) per grain thread count.

  cam_jax bench --config=configs/bench_data.py --workdir=runs/bench_data

Arguments: ``:tiny`` (seconds: the tests), ``:large`` (more grain threads, for a many-core
host).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.suite = 'data'
  c.models = ''  # no model: the suite times data only
  c.sizes = '224,512' if arg != 'tiny' else '64'
  c.num_images = 64 if arg != 'tiny' else 4
  c.batch_size = 32 if arg != 'tiny' else 2
  c.threads = '1,2' if arg != 'large' else '1,4,8,16'
  c.repeats = 3 if arg != 'tiny' else 1
  return c
