"""The embedded study: VGG, ResNet and ViT trained on phantom chest X-rays, Grad-CAM scored
against the exact pneumothorax masks of the test split.

  python -m launch.study --config=configs/study_phantom.py --workdir=runs/study_phantom

Arguments: ``:tiny`` (seconds, what the tests run), ``:large`` (an accelerator). Override any
field, e.g. ``--config.models=resnet_tiny --config.train.epochs=5``.
"""

import ml_collections

from configs import phantom_common


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = phantom_common.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.data = phantom_common.data_config(arg)
  c.data_dir = ''  # default: <workdir>/data
  c.models = 'vgg_tiny,resnet_tiny,vit_tiny' if arg != 'large' else 'vgg16_bn,resnet50,vit_s16'
  c.num_classes = 1
  c.init_from = ''  # pretrained weights per model: 'resnet50=/w/r50.pth,vit_s16=/w/vit.npz'
  c.train = phantom_common.train_config(arg)
  # Per-model changes to c.train: the ViT learns the lesion later than the CNNs (its validation
  # ROC-AUC jumps after about 5 epochs), so it trains twice as long.
  c.train_overrides = ml_collections.ConfigDict(
      {'vit_tiny': {'epochs': 2 * c.train.epochs}} if arg != 'large' else {})
  # method: one of cam_jax.cams.METHODS; layer '' = each model's default; target +1 explains
  # the positive finding; aug_smooth / eigen_smooth as in pytorch-grad-cam.
  c.cam = ml_collections.ConfigDict({'method': 'gradcam', 'layer': '', 'target': 1,
                                     'aug_smooth': False, 'eigen_smooth': False})
  c.score = ml_collections.ConfigDict({
      'batch_size': c.train.eval_batch_size, 'n_resamples': 2000 if arg != 'tiny' else 200,
      'baseline_grid': 8, 'overlay_count': 6, 'seed': 0})
  return c
