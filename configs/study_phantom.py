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
  c = ml_collections.ConfigDict()
  c.data = presets.data_config(arg)
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  c.models = 'vgg_tiny,resnet_tiny,vit_tiny' if arg != 'large' else 'vgg16_bn,resnet50,vit_s16'
  c.num_classes = 1
  c.init_from = ''  # pretrained weights per model: 'resnet50=/w/r50.pth,vit_s16=/w/vit.npz'
  c.train = presets.train_config(arg)
  # Per-model changes to c.train: the ViT learns the lesion later than the CNNs (its validation
  # ROC-AUC jumps after about 5 epochs), so it trains twice as long.
  c.train_overrides = ml_collections.ConfigDict(
      {'vit_tiny': {'epochs': 2 * c.train.epochs}} if arg != 'large' else {})
  # method: one of cam_jax.cams.METHODS; layer '' = each model's default; target +1 explains
  # the positive finding; aug_smooth / eigen_smooth as in pytorch-grad-cam.
  c.cam = ml_collections.ConfigDict({'method': 'gradcam', 'layer': '', 'target': 1,
                                     'aug_smooth': False, 'eigen_smooth': False})
  # metrics: groups of cam_jax.scoring.driver.METRIC_GROUPS (ROAD's imputation is slow on a
  # CPU: the accelerator config adds it); tune_split: where the IoU threshold is tuned
  # (CheXlocalize), '' for none; deletion_steps: RISE's curve has deletion_steps + 1 points.
  c.score = ml_collections.ConfigDict({
      'batch_size': c.train.eval_batch_size, 'n_resamples': 2000 if arg != 'tiny' else 200,
      'baseline_grid': 8, 'overlay_count': 6, 'seed': 0,
      'metrics': 'localisation,deletion_insertion' + (',road' if arg == 'large' else ''),
      'tune_split': 'validation', 'deletion_steps': 16 if arg != 'tiny' else 4})
  # Model-parameter randomisation (Adebayo et al. 2018) on the first n_images test images:
  # mode 'cascading' or 'independent', '' to skip.
  c.sanity = ml_collections.ConfigDict({'mode': 'cascading',
                                        'n_images': 64 if arg != 'tiny' else 16})
  # Repeatability (Arun et al. 2021): these models are trained a second time with seed + 1 and
  # their heat maps compared; reproducibility compares every pair of models.
  c.repeat_models = 'resnet_tiny' if arg != 'large' else ''
  return c
