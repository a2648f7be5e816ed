"""The paper's protocol (Qiu, Rivaz & Xiao, "Is visual explanation with Grad-CAM more reliable
for deeper neural networks? A case study with automatic pneumothorax diagnosis", MLMI 2023) on
SIIM-ACR: VGG-16/19, ResNet-18/34/50/101/152 and ViT-B/16, ViT-L/16 at 224 px, three seeds
each, Grad-CAM and three of its relatives, scored against the radiologists' masks.

  cam_jax study --config=configs/study_qiu2023.py --workdir=runs/qiu2023 \\
      --config.data.manual_dir=DIR [--config.init_from=resnet50=/w/r50.pth,...]

DIR is as for ``configs/study_siim.py``; ``init_from`` gives ImageNet weights per model (torch
state dicts or big_vision npz, ``cam_jax.models.weights``), as the paper initialises. ViT-S/16,
also in the paper, has the depth of ViT-B/16 (12 blocks, 53 weight layers): a depth analysis
cannot tell the two apart, so it is left out (``--config.models`` may swap it for ViT-B).
Everything past the data source and the zoo is ``presets.study_config('large')``: an
accelerator's study. ``:tiny`` is ``configs/study_siim.py:tiny`` (the tests run it on a
fixture).
"""

import ml_collections

from cam_jax import presets

PAPER_MODELS = 'vgg16_bn,vgg19_bn,resnet18,resnet34,resnet50,resnet101,resnet152,vit_b16,vit_l16'


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  if arg == 'tiny':
    return presets.study_config('tiny', presets.data_config('tiny', 'siim'))
  c = presets.study_config('large', presets.data_config('', 'siim'))
  c.models = PAPER_MODELS
  return c
