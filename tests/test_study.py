"""The whole study at a tiny size: prepare, train, CAM, score, report; then resume."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from cam_jax import report
from cam_jax.study import run_study
from configs import study_phantom

pytestmark = pytest.mark.slow  # whole-pipeline runs in subprocesses: minutes

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
  assert set(on_disk.columns) >= {'model', 'layer', 'depth', 'tuned_threshold', 'id', 'label',
                                  'prob', 'has_mask', 'ehr_auc', 'pointing_game', 'iou', 'dice',
                                  'relevance_mass', 'iou@0.50', 'deletion_auc', 'flags'}

  text = open(os.path.join(workdir, 'report.md')).read()
  page = open(os.path.join(workdir, report.REPORT_HTML)).read()
  assert logs[-2:] == [f'report: {os.path.join(workdir, n)}' for n in (report.REPORT,
                                                                        report.REPORT_HTML)]
  ci = r'\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]'
  signed = r'-?\d\.\d{2,3} \[-?\d\.\d{2,3}, -?\d\.\d{2,3}\]'
  for name in names:
    assert re.search(rf'\| {name} \|( {ci} \|){{6}} {n_test} \|', text), name  # classification
    assert re.search(rf'\| {name} \|( {ci} \|){{7}} \d+ \| \S+ \| \d+ \|', text), name
    assert re.search(rf'\| {name} \|( {ci} \|){{10}} \d+ \| 0\.\d\d \|', text), name  # tuned
    assert re.search(rf'\| {name} \| large \| [\d.]+-[\d.]+ \|( {ci} \|){{4}} \d+ \|', text)
    n_positive = int((records[records['model'] == name]['label'] == 1).sum())
    assert re.search(rf'\| {name} \|( {ci} \|){{4}} {n_positive} \|', text), name  # faithfulness
    for fill in ('mean', 'blur', 'reference', 'texture'):  # the fill check, on healthy images
      assert re.search(rf'\| {name} \| {fill} \| {signed} \| {n_test - n_positive} \|', text)
    assert re.search(rf'- {name}: EHR-AUC (yes|no), pointing game (yes|no), relevance mass '
                     '(yes|no)', text)
    assert re.search(rf'\| {name} \| cascading \| \S+ \|( {signed} \|){{2}} 16 \|', text)
  assert re.search(rf'\| {report.BASELINE} \|( {ci} \|){{7}} \d+ \| 8x8 uniform \| 0 \|', text)
  assert re.search(rf'\| EHR-AUC \| vgg_tiny - resnet_tiny \| {signed} \| wilcoxon \|', text)
  assert re.search(rf'\| pointing game \| (n/a|{signed}) \| (n/a|{signed}) \|', text)
  assert re.search(r'\| repeatability \| resnet_tiny \| resnet_tiny \(seed \+1\) \|', text)
  assert len(re.findall(r'\| reproducibility \|', text)) == 3
  assert 'removed pixels filled with' in text and '(fill `texture`)' in text
  for figure in ('overlays.png', 'sanity.png', 'metrics_by_depth.png', 'deletion_insertion.png'):
    assert f']({figure})' in text
    assert os.path.getsize(os.path.join(workdir, figure)) > 10_000
  for name in names + ['resnet_tiny_seed+1']:
    assert os.path.exists(os.path.join(workdir, 'models', name, 'checkpoint', 'model.json'))

  # launch.report rebuilds the same report from config.json and records.csv alone.
  for name in (report.REPORT, report.REPORT_HTML):
    os.remove(os.path.join(workdir, name))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-m', 'launch.report', f'--workdir={workdir}'], cwd=root,
                 check=True, capture_output=True, env={**os.environ, 'XLA_FLAGS': ''})
  assert open(os.path.join(workdir, 'report.md')).read() == text
  assert open(os.path.join(workdir, report.REPORT_HTML)).read() == page

  logs.clear()
  again = run_study(config, workdir, log=logs.append)
  assert sum('checkpoint found, not retraining' in m for m in logs) == 4
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
