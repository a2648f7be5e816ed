"""Scores the Grad-CAM maps of a trained model against the phantom lesion masks, or against
those of a real data set named in the argument.

  cam_jax score --config=configs/score_phantom.py --workdir=runs/score_resnet \
      --config.checkpoint=runs/resnet_tiny/checkpoint
  cam_jax score --config=configs/score_phantom.py:siim --workdir=runs/score_siim \
      --config.checkpoint=runs/resnet_siim/checkpoint --config.data.manual_dir=DIR

Arguments: as ``configs/train_phantom.py``'s (a size and/or a data set, ``:tiny,siim``); give
the data settings the model was trained with, so both read the same prepared set.

Writes ``records.csv`` (one row per image; ``--config.score.records=records.parquet`` for Parquet),
``summary.csv`` (bootstrap 95% CIs) and ``by_lesion_size.csv``. ``--config.cam.method`` takes a
comma-separated list; ``--config.score.metrics=localisation,deletion_insertion,road`` adds the
faithfulness metrics.
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  size, name = presets.check_data_arg(arg)
  c = ml_collections.ConfigDict()
  c.checkpoint = ''  # a directory written by cam_jax train (required)
  c.data = presets.data_config(size, name)
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  c.split = 'test'
  # method: one or more (comma-separated) of cam_jax.cams.METHODS; layer '' = the model's
  # default; target +1 explains the positive finding; aug_smooth / eigen_smooth as in
  # pytorch-grad-cam; dtype: the compute dtype of the CAM and the model's passes
  # ('float32' or 'bfloat16'; weights stay float32, maps are normalised and scored in float32).
  c.cam = ml_collections.ConfigDict({'method': 'gradcam', 'layer': '', 'target': 1,
                                     'aug_smooth': False, 'eigen_smooth': False,
                                     'dtype': 'float32'})
  # metrics: groups of cam_jax.scoring.driver.METRIC_GROUPS; tune_split: the split the IoU
  # threshold is tuned on (CheXlocalize), '' for none; deletion_steps: RISE's curve points - 1;
  # fill: deletion / insertion's fill (cam_jax.metrics.faithfulness.DELETION_FILLS; 'texture'
  # and 'reference' take their healthy references from the split fill_split).
  c.score = ml_collections.ConfigDict({
      'batch_size': 64 if size != 'tiny' else 16, 'n_resamples': 2000, 'seed': 0,
      'metrics': 'localisation', 'tune_split': 'validation', 'records': 'records.csv',
      'deletion_steps': 16, 'fill': 'rise', 'fill_split': 'validation'})
  return c
