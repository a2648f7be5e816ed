"""Benchmark: cam_jax heat maps beside pytorch-grad-cam, same architectures and weights.

  cam_jax bench --config=configs/bench_cams_torch.py --workdir=runs/bench_cams_torch

Needs the test extra and pytorch-grad-cam (the README's test command installs both). ``:tiny``
runs in seconds (what the tests run).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.suite = 'cams_vs_torch'
  c.models = 'resnet18,vgg11_bn,vit_s16' if arg != 'tiny' else 'resnet18'
  c.methods = ('gradcam,hirescam,gradcam++,xgradcam,layercam,eigencam' if arg != 'tiny'
               else 'gradcam')
  c.image_size = 128 if arg != 'tiny' else 64
  c.batch_size = 8 if arg != 'tiny' else 2
  c.repeats = 3 if arg != 'tiny' else 1
  return c
