"""The whole study at a tiny size: prepare, train, CAM, score, report; then resume."""

import os
import re
import subprocess
import sys

import pandas as pd

from cam_jax import report
from cam_jax.study import run_study
from configs import study_phantom


def test_tiny_study_end_to_end_and_resume(tmp_path, data_dir):
  config = study_phantom.get_config('tiny')
  config.data_dir = data_dir
  workdir = str(tmp_path / 'study')
  logs = []
  records = run_study(config, workdir, log=logs.append)

  names = ['vgg_tiny', 'resnet_tiny', 'vit_tiny']
  n_test = config.data.num_test
  assert list(records['model'].unique()) == names + [report.BASELINE]
  assert (records.groupby('model').size() == n_test).all()
  on_disk = pd.read_csv(os.path.join(workdir, 'records.csv'))
  assert len(on_disk) == 4 * n_test
  assert set(on_disk.columns) >= {'model', 'layer', 'id', 'label', 'prob', 'has_mask', 'ehr_auc',
                                  'pointing_game', 'iou', 'dice', 'flags'}

  text = open(os.path.join(workdir, 'report.md')).read()
  ci = r'\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]'
  for name in names:
    assert re.search(rf'\| {name} \| {ci} \| {ci} \| {n_test} \|', text), name  # classification
    assert re.search(rf'\| {name} \| \S+ \| {ci} \| {ci} \| {ci} \| {ci} \| \d+ \| \d+ \|', text)
    assert re.search(rf'- {name}: EHR-AUC (yes|no), pointing game (yes|no)', text)
  assert re.search(rf'\| {report.BASELINE} \| 8x8 uniform \| {ci}', text)
  assert '![Grad-CAM overlays](overlays.png)' in text
  assert os.path.getsize(os.path.join(workdir, 'overlays.png')) > 10_000
  for name in names:
    assert os.path.exists(os.path.join(workdir, 'models', name, 'checkpoint', 'model.json'))

  # launch.report rebuilds the same report from config.json and records.csv alone.
  os.remove(os.path.join(workdir, 'report.md'))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-m', 'launch.report', f'--workdir={workdir}'], cwd=root,
                 check=True, capture_output=True, env={**os.environ, 'XLA_FLAGS': ''})
  assert open(os.path.join(workdir, 'report.md')).read() == text

  logs.clear()
  again = run_study(config, workdir, log=logs.append)
  assert sum('checkpoint found, not retraining' in m for m in logs) == 3
  pd.testing.assert_frame_equal(again, records, check_exact=False, rtol=1e-6, check_dtype=False)
  assert (again['flags'] == records['flags']).all()


def test_a_workdir_refuses_another_config(tmp_path, data_dir):
  config = study_phantom.get_config('tiny')
  config.data_dir = data_dir
  config.models = 'resnet_tiny'
  workdir = str(tmp_path / 'study')
  run_study(config, workdir, log=lambda m: None)
  config.train.epochs = 2
  try:
    run_study(config, workdir, log=lambda m: None)
  except ValueError as e:
    assert 'another config' in str(e)
  else:
    raise AssertionError('expected a ValueError')
