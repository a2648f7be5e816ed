"""Benchmarks: Grad-CAM and fused scoring vs forward-only, and whole-data-set scoring.

  cam_jax bench --config=configs/bench.py --workdir=runs/bench

``:tiny`` shrinks everything to seconds (what the tests run).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.suite = 'cams'
  c.models = 'vgg_tiny,resnet_tiny,vit_tiny'
  # CAM methods timed beside Grad-CAM (rollout only where the model is a ViT)
  c.methods = ('hirescam,gradcam++,xgradcam,layercam,gradcam_elementwise,eigencam,scorecam,'
               'ablationcam,rollout')
  c.image_size = 128 if arg != 'tiny' else 32
  c.batch_size = 64 if arg != 'tiny' else 8
  c.repeats = 5 if arg != 'tiny' else 2
  c.data = presets.bench_data_config(arg, c.image_size, c.batch_size)
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  return c
