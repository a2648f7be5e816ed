"""The absl entry points: bad input gives one line on stderr naming the valid choices, exit 2."""

import os
import subprocess
import sys

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, tmp_path):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}
  proc = subprocess.run([sys.executable, '-m', *args, f'--workdir={tmp_path}'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  return proc.returncode, proc.stderr.strip().splitlines()


@pytest.mark.parametrize('args,expected', [
    (('launch.train', '--config=configs/train_phantom.py:tiny', '--config.nope=1'),
     "error: unknown config field 'nope' in config; choose one of: data, data_dir, model, train"),
    (('launch.train', '--config=configs/train_phantom.py:tiny', '--config.train.epoch=1'),
     "error: unknown config field 'epoch' in config.train; choose one of: batch_size,"),
    (('launch.study', '--config=configs/study_phantom.py:huge'),
     "error: ValueError: unknown config argument 'huge'; choose one of: '', 'tiny', 'large'"),
    (('launch.train', '--config=configs/train_phantom.py:tiny', '--config.model.name=resnet7'),
     "error: unknown model 'resnet7'; choose one of: resnet101, resnet152, resnet18,"),
    (('launch.score', '--config=configs/score_phantom.py:tiny', '--config.checkpoint=/nowhere'),
     'error: no cam_jax checkpoint in /nowhere'),
    (('launch.score', '--config=configs/score_phantom.py:tiny', '--config.checkpoint=/nowhere',
      '--config.score.metrics=localisation,rise'),
     "error: unknown metric group(s) 'rise'; choose from: localisation, deletion_insertion, road"),
    (('launch.score', '--config=configs/score_phantom.py:tiny', '--config.checkpoint=/nowhere',
      '--config.score.records=records.xlsx'),
     'error: '),
])
def test_bad_input_is_one_line_naming_the_choices(args, expected, tmp_path):
  code, err = _run(*args, tmp_path=tmp_path)
  assert code == 2, err
  assert len(err) >= 1 and err[-1].startswith(expected), err[-3:]


def test_score_writes_parquet_records_and_summaries(tmp_path):
  from cam_jax import models  # pylint: disable=g-import-not-at-top
  from cam_jax.scoring import summary  # pylint: disable=g-import-not-at-top
  from cam_jax.train import checkpoint, loop  # pylint: disable=g-import-not-at-top
  ckpt = str(tmp_path / 'ckpt')
  checkpoint.save(ckpt, loop.recipe('resnet_tiny', 1, 32, 0),
                  models.create('resnet_tiny', image_size=32, seed=0))
  out = tmp_path / 'out'
  code, err = _run('launch.score', '--config=configs/score_phantom.py:tiny',
                   f'--config.checkpoint={ckpt}', '--config.cam.method=gradcam,hirescam',
                   '--config.score.records=records.parquet',
                   '--config.score.metrics=localisation,deletion_insertion',
                   '--config.score.deletion_steps=2', tmp_path=out)
  assert code == 0, err[-5:]
  records = summary.read_records(str(out / 'records.parquet'))
  assert list(records['method'].unique()) == ['gradcam', 'hirescam']
  assert {'ehr_auc', 'deletion_auc', 'iou@0.50'} <= set(records.columns)
  table = pd.read_csv(out / 'summary.csv')
  assert {'iou_tuned', 'insertion_auc'} <= set(table['metric'])
  assert set(pd.read_csv(out / 'by_lesion_size.csv')['stratum']) == {'small', 'medium', 'large'}
