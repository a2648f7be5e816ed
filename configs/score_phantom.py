"""Scores the Grad-CAM maps of a trained model against the phantom lesion masks.

  python -m launch.score --config=configs/score_phantom.py --workdir=runs/score_resnet \
      --config.checkpoint=runs/resnet_tiny/checkpoint

Writes ``records.csv`` (one row per image) and ``summary.csv`` (bootstrap 95% CIs).
"""

import ml_collections

from configs import phantom_common


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = phantom_common.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.checkpoint = ''  # a directory written by launch.train (required)
  c.data = phantom_common.data_config(arg)
  c.data_dir = ''  # default: <workdir>/data
  c.split = 'test'
  # method: one of cam_jax.cams.METHODS; layer '' = each model's default; target +1 explains
  # the positive finding; aug_smooth / eigen_smooth as in pytorch-grad-cam.
  c.cam = ml_collections.ConfigDict({'method': 'gradcam', 'layer': '', 'target': 1,
                                     'aug_smooth': False, 'eigen_smooth': False})
  c.score = ml_collections.ConfigDict({'batch_size': 64 if arg != 'tiny' else 16,
                                       'n_resamples': 2000, 'seed': 0})
  return c
