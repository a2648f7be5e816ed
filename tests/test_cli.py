"""The absl entry points: bad input gives one line on stderr naming the valid choices, exit 2."""

import os
import subprocess
import sys

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
])
def test_bad_input_is_one_line_naming_the_choices(args, expected, tmp_path):
  code, err = _run(*args, tmp_path=tmp_path)
  assert code == 2, err
  assert len(err) >= 1 and err[-1].startswith(expected), err[-3:]
