"""Benchmark: forward throughput of the model zoo at 224 px beside the same models in torch.

  cam_jax bench --config=configs/bench_zoo.py --workdir=runs/bench_zoo

Needs torch (``pip install -e '.[test]'``). ``:tiny`` runs in seconds (what the tests run).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.suite = 'zoo'
  c.models = 'resnet18,resnet50,vgg16_bn,vit_s16,vit_b16' if arg != 'tiny' else 'resnet18'
  c.image_size = 224 if arg != 'tiny' else 64
  c.batch_size = 8 if arg != 'tiny' else 2
  c.repeats = 3 if arg != 'tiny' else 1
  return c
