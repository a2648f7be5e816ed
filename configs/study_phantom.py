"""The embedded study: VGG, ResNet and ViT trained on phantom chest X-rays, Grad-CAM scored
against the exact pneumothorax masks of the test split.

  cam_jax study --config=configs/study_phantom.py --workdir=runs/study_phantom

Arguments: ``:tiny`` (seconds, what the tests run), ``:large`` (an accelerator). Override any
field, e.g. ``--config.models=resnet_tiny --config.train.epochs=5``.
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  return presets.study_config(arg, presets.study_phantom_data(arg))
