"""The whole study at a tiny size: cells (train, CAM, score, checks), the report, resuming, a
study killed between and inside cells, and cells run one at a time."""

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from cam_jax import report
from cam_jax.study import cells, run_study
from cam_jax.study.run import read_records
from configs import study_phantom

pytestmark = pytest.mark.slow  # whole-pipeline runs: minutes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ['vgg_tiny_1', 'vgg_tiny_2', 'vit_tiny_1', 'vit_tiny_2']
RUNS = [f'{a}_s{s}' for s in (0, 1) for a in ARCHS]
CI = r'-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]'


def _config(data_dir):
  config = study_phantom.get_config('tiny')
  config.data_dir = data_dir
  return config


@pytest.fixture(scope='module')
def study(tmp_path_factory, data_dir):
  """(workdir, records, log lines) of one uninterrupted tiny study."""
  workdir = str(tmp_path_factory.mktemp('study') / 'w')
  logs = []
  records = run_study(_config(data_dir), workdir, log=logs.append)
  return workdir, records, logs


def _cli(workdir, *flags, kill_at=None, env=None):
  """Runs ``cam_jax study`` on the tiny config; with ``kill_at`` (a regex), SIGKILLs it as soon
  as a line of its output matches. Returns (returncode, output). It inherits the tests' 8 host
  devices: a run on another device count reduces in another order (probabilities differ in the
  fifth digit)."""
  proc = subprocess.Popen(
      [sys.executable, '-m', 'cam_jax', 'study', '--config=configs/study_phantom.py:tiny',
       f'--workdir={workdir}', *flags], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if kill_at and re.search(kill_at, line):
      proc.send_signal(signal.SIGKILL)
      break
  proc.stdout.close()
  return proc.wait(timeout=900), ''.join(lines)


def test_tiny_study_cells_report_and_resume(study, data_dir):
  workdir, records, logs = study
  n_test = _config(data_dir).data.num_test
  assert list(records['model'].unique()) == RUNS + [report.BASELINE]
  assert (records.groupby('model').size() == n_test).all()
  assert set(records.columns) >= {
      'model', 'architecture', 'family', 'depth', 'seed', 'method', 'layer', 'id', 'label',
      'prob', 'has_mask', 'mask_fraction', 'ehr_auc', 'pointing_game', 'iou_otsu',
      'deletion_auc', 'insertion_auc', 'flags'}
  depth = records.drop_duplicates('architecture').set_index('architecture')['depth']
  assert depth[ARCHS].tolist() == [7, 11, 9, 13]
  for name in cells.plan(_config(data_dir)):
    assert cells.is_done(workdir, name), name
  for run in RUNS:
    cell = cells.path(workdir, run)
    assert os.path.exists(os.path.join(cell, 'checkpoint', 'model.json'))
    assert os.path.exists(os.path.join(cell, 'sanity.csv')) == run.endswith('_s0')
  # The fill check runs on the shallowest depth of each family, seed 0.
  assert sorted(os.listdir(cells.path(workdir, 'vgg_tiny_1_s0'))).count('fill_check.csv') == 1
  assert not os.path.exists(os.path.join(cells.path(workdir, 'vgg_tiny_2_s0'), 'fill_check.csv'))

  text = open(os.path.join(workdir, report.REPORT)).read()
  page = open(os.path.join(workdir, report.REPORT_HTML)).read()
  assert logs[-2:] == [f'report: {os.path.join(workdir, n)}' for n in (report.REPORT,
                                                                        report.REPORT_HTML)]
  assert text.index('## Trust verdict') < text.index('## Classification')
  for arch, d in zip(ARCHS, (7, 11, 9, 13)):
    family = arch.split('_')[0]
    assert re.search(rf'\| {arch} \({d}\) \| gradcam \|( [^|]+ \|){{5}} (\*\*trusted\*\*|not '
                     r'trusted) \|', text), arch
    assert re.search(rf'\| {family} \| {arch} \({d}\) \|( {CI} \|){{2}} 2 \| {n_test} \|', text)
    assert re.search(rf'\| {family} \| {arch} \({d}\) \|( {CI} \|){{5}} 2 \| \d+ \|', text)
    assert re.search(rf'\| {family} \| {arch} \({d}\) \| pointing game \| {CI} \| t \|', text)
  assert re.search(r'\|\s+\| chance \(analytic, mean over lesion images\) \|\s+\| 0\.\d{3} \|',
                   text)
  assert re.search(rf'\|\s+\| {report.BASELINE} \(8x8 uniform\) \|( {CI} \|){{5}}', text)
  # Trend per family x (5 heat metrics + ROC-AUC), pairs the same, families at 2 depth ranks;
  # chance: 3 metrics x 4 models; ROC-AUC's pair rows have no p: 12 + 10 + 10 + 12 tests.
  for family in ('vgg', 'vit'):
    assert len(re.findall(rf'\| {family} \| [^|]+ \| -?\d\.\d{{4}} \[.*\] \| (-?\d\.\d\d|n/a) '
                          r'\| slope_t \|', text)) == 6
  assert 'Holm-adjusted over all 44 tests together' in text
  assert re.search(r'\| EHR-AUC \| 1 \| vgg_tiny_1 \(7\) - vit_tiny_1 \(9\) \|', text)
  assert len(re.findall(r'\| repeatability \| gradcam \|', text)) == 4
  assert len(re.findall(r'\| reproducibility \| gradcam \|', text)) == 2
  for figure in (report.DEPTH_PLOT, report.SANITY_PLOT, report.CURVES_PLOT,
                 *(f'cells/pairs/overlays_{c}.png' for c in ('best', 'worst', 'random'))):
    assert f']({figure})' in text, figure
    assert os.path.getsize(os.path.join(workdir, figure)) > 10_000, figure
  assert '## Run metadata' in text and '| pairs |' in text and '"lesion_contrast": 2.5' in text

  # cam_jax report rebuilds the same report from config.json and the cells alone.
  for name in (report.REPORT, report.REPORT_HTML):
    os.remove(os.path.join(workdir, name))
  subprocess.run([sys.executable, '-m', 'launch.report', f'--workdir={workdir}'], cwd=ROOT,
                 check=True, capture_output=True, env={**os.environ, 'XLA_FLAGS': ''})
  assert open(os.path.join(workdir, report.REPORT)).read() == text
  assert open(os.path.join(workdir, report.REPORT_HTML)).read() == page

  logs = []
  again = run_study(_config(data_dir), workdir, log=logs.append)
  assert sum(m.endswith('] done, skipped') for m in logs) == len(RUNS) + 2
  pd.testing.assert_frame_equal(again, records)


def test_a_killed_study_resumes_to_the_same_records(study, tmp_path):
  workdir = str(tmp_path / 'killed')
  # Between cells: the first model cell has finished, the second not begun.
  code, out = _cli(workdir, '--workers=1', kill_at=r'\[vgg_tiny_1_s0\] done in')
  assert code == -signal.SIGKILL, out[-3000:]
  # Inside a cell: vgg_tiny_2_s0 is trained and checkpointed, not yet scored.
  code, out = _cli(workdir, '--workers=1', kill_at=r'\[vgg_tiny_2_s0\] best validation roc_auc')
  assert code == -signal.SIGKILL, out[-3000:]
  assert '[vgg_tiny_1_s0] done, skipped' in out
  assert not cells.is_done(workdir, 'vgg_tiny_2_s0')
  # The rest two cells at a time, in worker processes: the records below are also those of
  # cells run side by side.
  code, out = _cli(workdir, '--workers=2')
  assert code == 0, out[-3000:]
  # Trained before the kill: loaded, or, killed before its history was written, resumed at its
  # last step (nothing retrained).
  assert ('[vgg_tiny_2_s0] checkpoint found, not retraining' in out or
          re.search(r'\[vgg_tiny_2_s0\] resumed from step (\d+)/\1 ', out)), out[-3000:]
  assert os.path.exists(os.path.join(cells.path(workdir, 'vgg_tiny_2_s0'), 'history.csv'))
  assert 'report: ' in out
  config = _config(os.environ['CAM_JAX_DATA_DIR'])
  pd.testing.assert_frame_equal(read_records(workdir, config), study[1])
  for table in ('agreement.csv',):
    pd.testing.assert_frame_equal(
        pd.read_csv(os.path.join(cells.path(workdir, 'pairs'), table)),
        pd.read_csv(os.path.join(cells.path(study[0], 'pairs'), table)))


def _processes_with(variable: str) -> list[int]:
  """The pids of the processes whose environment has ``variable`` (Linux's /proc)."""
  pids = []
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/environ', 'rb') as f:
        if variable.encode() + b'=' in f.read():
          pids.append(int(pid))
    except OSError:
      pass
  return pids


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='needs /proc to find the workers')
def test_killing_a_study_stops_its_worker_processes(tmp_path):
  marker = f'CAM_JAX_TEST_{os.getpid()}'
  code, out = _cli(str(tmp_path / 'w'), '--workers=2', kill_at=r'_s0\] step \d+/',
                   env={marker: '1'})
  assert code == -signal.SIGKILL, out[-3000:]
  for _ in range(20):  # each worker polls for its parent twice a second
    if not _processes_with(marker):
      break
    time.sleep(0.5)
  assert not _processes_with(marker)


def test_cells_one_at_a_time(tmp_path):
  workdir = str(tmp_path / 'w')
  code, out = _cli(workdir, '--cell=pairs')
  assert code == 2 and 'the pairs cell needs the cells vgg_tiny_1_s0, ' in out, out[-2000:]
  assert 'data: ' not in out  # refused before any work
  code, out = _cli(workdir, '--cell=resnet50_s0')
  assert code == 2 and "unknown cells ['resnet50_s0']; this study has: vgg_tiny_1_s0" in out
  code, out = _cli(workdir, '--cell=baseline')
  assert code == 0 and '[baseline] finished; the report waits for the other cells' in out, out
  assert cells.is_done(workdir, 'baseline') and not cells.is_done(workdir, 'vgg_tiny_1_s0')
  assert not os.path.exists(os.path.join(workdir, report.REPORT))
  code, out = _cli(workdir, '--cell=baseline')
  assert code == 0 and '[baseline] done, skipped' in out


def test_a_workdir_refuses_another_config(tmp_path, data_dir):
  config = _config(data_dir)
  workdir = str(tmp_path / 'study')
  run_study(config, workdir, cell='baseline', log=lambda m: None)
  config.train.epochs = 2
  with pytest.raises(ValueError, match='another config'):
    run_study(config, workdir, cell='baseline', log=lambda m: None)


def test_bad_study_configs_are_refused_before_any_work(tmp_path, data_dir):
  for field, value, message in (
      ('models', 'vgg_tiny_1,vgg_tiny_1', 'repeats a model'),
      ('seeds', 0, 'config.seeds must be an int >= 1'),
      ('cam.methods', 'gradcam,nope', "unknown CAM method 'nope'"),
      ('train_overrides', {'vit_tiny_1': {'epochs': 3}}, 'are not families')):
    config = _config(data_dir)
    if field == 'train_overrides':
      config.train_overrides = value
    else:
      config.update_from_flattened_dict({field: value})
    with pytest.raises(ValueError, match=re.escape(message)):
      run_study(config, str(tmp_path / field), log=lambda m: None)
    assert not os.path.exists(tmp_path / field)


def test_the_tiny_shortcut_study_compares_each_model_with_its_control(tmp_path, data_dir):
  from configs import study_shortcut  # pylint: disable=g-import-not-at-top
  config = study_shortcut.get_config('tiny')
  config.data_dir = data_dir
  workdir = str(tmp_path / 'w')
  logs = []
  run_study(config, workdir, log=logs.append)
  assert cells.plan(config) == ['vgg_tiny_1_s0', 'vgg_tiny_1_s0_control', 'baseline', 'pairs']
  control = cells.path(workdir, 'vgg_tiny_1_s0_control')
  assert not os.path.exists(os.path.join(control, 'records.csv'))  # not in the depth analysis
  table = pd.read_csv(os.path.join(control, 'shortcut.csv'))
  mine = pd.read_csv(os.path.join(cells.path(workdir, 'vgg_tiny_1_s0'), 'shortcut.csv'))
  assert (table['id'] == mine['id']).all() and table['control'].all() and not mine['control'].any()
  assert table['has_tube'].sum() > 0  # scored on the confounded test split, tubes and all
  # The control trained on the same images without tubes: its training split has none.
  from cam_jax import data  # pylint: disable=g-import-not-at-top
  from cam_jax.study.run import control_data  # pylint: disable=g-import-not-at-top
  train = data.open_split(control_data(config), 'train', data_dir)
  assert not any(bool(train[i]['tube']) for i in range(len(train)))
  text = open(os.path.join(workdir, report.REPORT)).read()
  assert re.search(rf'\| vgg_tiny_1 \| 0 \| gradcam \|( {CI} \|){{3}} [\d.]+ \| [\d.]+ \| \d+ \|',
                   text)
  assert any('heat more on the tube than on the lesion' in m for m in logs)


def test_the_tiny_sanity_study_runs_both_randomisations(tmp_path, data_dir):
  from configs import study_sanity  # pylint: disable=g-import-not-at-top
  config = study_sanity.get_config('tiny')
  config.data_dir = data_dir
  config.models = 'vgg_tiny_1,vit_tiny_1'
  workdir = str(tmp_path / 'w')
  run_study(config, workdir, log=lambda m: None)
  rows = pd.read_csv(os.path.join(cells.path(workdir, 'vit_tiny_1_s0'), 'sanity.csv'))
  assert set(rows['mode']) == {'cascading', 'independent'}
  text = open(os.path.join(workdir, report.REPORT)).read()
  for arch in ('vgg_tiny_1', 'vit_tiny_1'):
    for mode in ('cascading', 'independent'):
      assert re.search(rf'\| {arch}_s0 \| gradcam \| {mode} \| \S+ \|( {CI} \|){{2}} 16 \|',
                       text), (arch, mode)
