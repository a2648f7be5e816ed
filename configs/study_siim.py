"""The study on SIIM-ACR (the paper's data): VGG, ResNet and ViT trained on the radiographs,
Grad-CAM scored against the radiologists' pneumothorax masks of the test split.

  cam_jax study --config=configs/study_siim.py --workdir=runs/study_siim \
      --config.data.manual_dir=DIR

DIR holds ``train-rle.csv`` (or ``stage_2_train.csv``) and ``dicom-images-train/``; the data are
prepared on first use (or beforehand with ``cam_jax prepare``). Everything past the data source
is ``configs/study_phantom.py``'s (``cam_jax.presets.study_config``). Arguments: ``:tiny``,
``:large``, as there.
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  return presets.study_config(arg, presets.data_config(arg, 'siim'))
