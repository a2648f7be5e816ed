"""Scores a checkpoint's CAMs: ``cam_jax score --config=configs/score_phantom.py
--workdir=DIR --config.checkpoint=CKPT``.

Streams the split once per CAM method with a progress bar; writes the per-image records
(``config.score.records``: ``.csv`` or ``.parquet``), ``summary.csv`` and ``by_lesion_size.csv``.
"""

import os

import pandas as pd
from absl import flags
from ml_collections import config_flags

import cam_jax
from cam_jax import data, models
from cam_jax.analysis import summary
from cam_jax.cli import common
from cam_jax.core import processes
from cam_jax.core.errors import BadInput
from cam_jax.core.text import split_list
from cam_jax.metrics import faithfulness
from cam_jax.models import checkpoint
from cam_jax.scoring import driver

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Score config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  if not config.checkpoint:
    raise BadInput('set --config.checkpoint to a directory written by cam_jax train')
  metrics = driver.check_metrics(split_list(config.score.metrics))
  methods = split_list(config.cam.method)
  os.makedirs(workdir, exist_ok=True)
  records_path = summary.check_records_path(os.path.join(workdir, config.score.records))
  models.compute_dtype(config.cam.dtype, 'cam.dtype')
  model, _ = checkpoint.load(config.checkpoint, dtype=config.cam.dtype)
  source = data.open_split(config.data, config.split, config.data_dir)
  options = dict(layer=config.cam.layer or None, target=config.cam.target,
                 aug_smooth=config.cam.aug_smooth, eigen_smooth=config.cam.eigen_smooth,
                 batch_size=config.score.batch_size, n_resamples=config.score.n_resamples,
                 seed=config.score.seed)
  frames, summaries, strata = [], [], []
  tune_on = (data.open_split(config.data, config.score.tune_split, config.data_dir)
             if config.score.tune_split else None)
  fill_from = (data.open_split(config.data, config.score.fill_split, config.data_dir)
               if config.score.fill in faithfulness.NEEDS_REFERENCE else None)
  for method in methods:
    result = cam_jax.score(model, source, method=method, metrics=metrics, tune_on=tune_on,
                           deletion_steps=config.score.deletion_steps, fill=config.score.fill,
                           fill_from=fill_from, **options)
    if tune_on is not None:
      common.log(f'{method}: IoU threshold tuned on {config.score.tune_split}: '
                 f'{result.tuned_threshold:.2f}')
    for frame, out in ((result.records, frames), (result.summary, summaries),
                       (result.by_size, strata)):
      frame.insert(0, 'method', method)
      out.append(frame)
    common.log(f'{method}:\n' + result.summary.to_string(index=False))
  if processes.is_primary():  # every process of a multi-process job holds every record
    summary.write_records(pd.concat(frames, ignore_index=True), records_path)
    pd.concat(summaries).to_csv(os.path.join(workdir, 'summary.csv'), index=False)
    pd.concat(strata).to_csv(os.path.join(workdir, 'by_lesion_size.csv'), index=False)
  common.log(f'records: {records_path}')

