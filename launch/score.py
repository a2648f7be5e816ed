"""Scores a checkpoint's CAMs: ``python -m launch.score --config=configs/score_phantom.py
--workdir=DIR --config.checkpoint=CKPT``.

Streams the split once per CAM method with a progress bar; writes the per-image records
(``config.score.records``: ``.csv`` or ``.parquet``), ``summary.csv`` and ``by_lesion_size.csv``.
"""

import os

import pandas as pd
from absl import flags
from ml_collections import config_flags

import cam_jax
from cam_jax import data
from cam_jax.scoring import driver, summary
from cam_jax.train import checkpoint
from launch import common

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Score config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def _split_list(text: str) -> list[str]:
  return [t.strip() for t in text.split(',') if t.strip()]


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  if not config.checkpoint:
    raise ValueError('set --config.checkpoint to a directory written by launch.train')
  metrics = driver.check_metrics(_split_list(config.score.metrics))
  methods = _split_list(config.cam.method)
  os.makedirs(workdir, exist_ok=True)
  records_path = summary.check_records_path(os.path.join(workdir, config.score.records))
  model, _ = checkpoint.load(config.checkpoint)
  data_dir = config.data_dir or os.path.join(workdir, 'data')
  source = data.open_split(config.data, config.split, data_dir)
  options = dict(layer=config.cam.layer or None, target=config.cam.target,
                 aug_smooth=config.cam.aug_smooth, eigen_smooth=config.cam.eigen_smooth,
                 batch_size=config.score.batch_size, n_resamples=config.score.n_resamples,
                 seed=config.score.seed)
  frames, summaries, strata = [], [], []
  for method in methods:
    threshold = None
    if config.score.tune_split:
      tuning = cam_jax.score(model, data.open_split(config.data, config.score.tune_split,
                                                    data_dir), method=method, **options)
      threshold = summary.tune_threshold(tuning.records)
      common.log(f'{method}: IoU threshold tuned on {config.score.tune_split}: {threshold:.2f}')
    result = cam_jax.score(model, source, method=method, metrics=metrics,
                           tuned_threshold=threshold, deletion_steps=config.score.deletion_steps,
                           **options)
    for frame, out in ((result.records, frames), (result.summary, summaries),
                       (result.by_size, strata)):
      frame.insert(0, 'method', method)
      out.append(frame)
    common.log(f'{method}:\n' + result.summary.to_string(index=False))
  summary.write_records(pd.concat(frames, ignore_index=True), records_path)
  pd.concat(summaries).to_csv(os.path.join(workdir, 'summary.csv'), index=False)
  pd.concat(strata).to_csv(os.path.join(workdir, 'by_lesion_size.csv'), index=False)
  common.log(f'records: {records_path}')


if __name__ == '__main__':
  common.run(main)
