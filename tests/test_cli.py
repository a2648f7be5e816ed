"""The command line, run as a user who installed the package runs it: the ``cam_jax`` command
from a directory outside the checkout, configs given by path. Bad input gives exactly one line
on stderr naming the valid choices and exit 2; a bug inside cam_jax prints its traceback. The
train and score configs select a real data set by name in their argument."""

import csv
import glob
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from cam_jax import presets
from cam_jax.core.errors import BadInput
from cam_jax.testing import xray_files as xf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAM_JAX = os.path.join(os.path.dirname(sys.executable), 'cam_jax')  # the console entry point


def _config(name: str) -> str:
  return os.path.join(ROOT, 'configs', name)


def _env():
  return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}


def _run(*args, cwd, command=(CAM_JAX,)):
  proc = subprocess.run([*command, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                        timeout=600)
  return proc.returncode, proc.stderr.strip().splitlines()


@pytest.mark.slow
@pytest.mark.parametrize('args,expected', [
    (('train', f'--config={_config("train_phantom.py")}:tiny', '--config.nope=1'),
     "error: unknown config field 'nope' in config; choose one of: data, data_dir, model, train"),
    (('train', f'--config={_config("train_phantom.py")}:tiny', '--config.train.epoch=1'),
     "error: unknown config field 'epoch' in config.train; choose one of: accum_steps, "
     'augment, batch_size, checkpoint_every_steps, class_weighting, dtype, ema_decay, epochs, '
     'eval_batch_size, focal_gamma, fsdp_devices, hflip, keep_checkpoints, learning_rate, '
     'log_every_steps, loss, momentum, normalisation, optimizer, param_sharding, seed, '
     'warmup_epochs, weight_decay'),
    (('study', f'--config={_config("study_phantom.py")}:huge'),
     "error: unknown config argument 'huge'; choose one of: '', 'tiny', 'large'"),
    (('train', f'--config={_config("train_phantom.py")}:tiny,mimic'),
     "error: bad config argument 'tiny,mimic': give at most one size ('', 'tiny', 'large') and "
     'at most one data set (phantom, siim, siim_png, nih, chexlocalize, csv)'),
    (('train', f'--config={_config("train_phantom.py")}:tiny', '--config.model.name=resnet7'),
     "error: unknown model 'resnet7'; choose one of: resnet101, resnet152, resnet18, resnet34, "
     'resnet50, resnet_tiny, resnet_tiny_1, resnet_tiny_2, resnet_tiny_3, vgg11,'),
    (('score', f'--config={_config("score_phantom.py")}:tiny', '--config.checkpoint=/nowhere'),
     'error: no cam_jax checkpoint in /nowhere (expected model.json and weights/)'),
    (('score', f'--config={_config("score_phantom.py")}:tiny', '--config.checkpoint=/nowhere',
      '--config.score.metrics=localisation,rise'),
     "error: unknown metric group(s) 'rise'; choose from: localisation, deletion_insertion, road"),
    (('score', f'--config={_config("score_phantom.py")}:tiny', '--config.checkpoint=/nowhere',
      '--config.score.records=records.xlsx'),
     'error: {workdir}/records.xlsx: records are written and read as .csv or .parquet'),
    (('report',), 'error: {workdir}/config.json not found: is {workdir} a study workdir?'),
    (('frob',), "error: unknown verb 'frob'; usage: cam_jax <verb> --config=FILE[:arg] "
     '--workdir=DIR [--config.<field>=<value> ...]; verbs: prepare, train, score, study, report, '
     'bench'),
])
def test_bad_input_is_one_line_naming_the_choices(args, expected, tmp_path):
  workdir = str(tmp_path / 'w')
  code, err = _run(*args, f'--workdir={workdir}', cwd=tmp_path)
  assert code == 2, err
  expected = expected.format(workdir=workdir)
  assert [line for line in err if line.startswith('error: ')] == [err[-1]], err
  assert err[-1].startswith(expected), err[-3:]
  assert not any('Traceback' in line for line in err), err


@pytest.mark.slow
def test_traceback_flag_prints_the_traceback_of_bad_input_too(tmp_path):
  code, err = _run('train', f'--config={_config("train_phantom.py")}:tiny',
                   '--config.model.name=resnet7', '--traceback', f'--workdir={tmp_path}',
                   cwd=tmp_path)
  assert code == 2
  assert 'Traceback (most recent call last):' in err
  assert err[-1].startswith("error: unknown model 'resnet7'")


def test_an_internal_error_prints_its_traceback_not_a_bad_input_line(tmp_path):
  """A ValueError raised inside cam_jax (here: a function patched to fail) is a bug: its
  traceback is printed and the exit code is 1, never the one-line bad-input exit 2."""
  script = (
      'from cam_jax.models import checkpoint\n'
      'def broken(*args, **kwargs):\n'
      '  raise ValueError("an internal error")\n'
      'checkpoint.recipe = broken\n'
      'from cam_jax import cli\n'
      f'cli.main(["train", "--config={_config("train_phantom.py")}:tiny", '
      f'"--workdir={tmp_path}"])\n')
  code, err = _run('-c', script, cwd=tmp_path, command=(sys.executable,))
  assert code == 1, err
  assert 'Traceback (most recent call last):' in err
  assert err[-1] == 'ValueError: an internal error'
  assert not any(line.startswith('error: ') for line in err)


@pytest.mark.slow
def test_verbs_and_the_api_example_run_outside_the_checkout(tmp_path):
  """train, score and study from a temporary directory, then the README's Python API example
  (at the tiny size, on the checkpoint just trained)."""
  out = tmp_path / 'out'
  code, err = _run('train', f'--config={_config("train_phantom.py")}:tiny',
                   f'--workdir={out / "train"}', cwd=tmp_path)
  assert code == 0, err[-5:]
  ckpt = out / 'train' / 'checkpoint'
  assert (ckpt / 'model.json').exists() and (out / 'train' / 'history.csv').exists()
  code, err = _run('score', f'--config={_config("score_phantom.py")}:tiny',
                   f'--config.checkpoint={ckpt}', '--config.cam.method=gradcam,hirescam',
                   '--config.score.records=records.parquet',
                   '--config.score.metrics=localisation,deletion_insertion',
                   '--config.score.deletion_steps=2', f'--workdir={out / "score"}', cwd=tmp_path)
  assert code == 0, err[-5:]
  from cam_jax.analysis import summary  # pylint: disable=g-import-not-at-top
  records = summary.read_records(str(out / 'score' / 'records.parquet'))
  assert list(records['method'].unique()) == ['gradcam', 'hirescam']
  assert {'ehr_auc', 'deletion_auc', 'iou@0.50'} <= set(records.columns)
  table = pd.read_csv(out / 'score' / 'summary.csv')
  assert {'iou_tuned', 'insertion_auc'} <= set(table['metric'])
  assert set(pd.read_csv(out / 'score' / 'by_lesion_size.csv')['stratum']) == {
      'small', 'medium', 'large'}
  code, err = _run('study', f'--config={_config("study_phantom.py")}:tiny',
                   '--config.models=resnet_tiny_1', '--config.seeds=1',
                   '--config.sanity.mode=', f'--workdir={out / "study"}', cwd=tmp_path)
  assert code == 0, err[-5:]
  assert '| resnet | resnet_tiny_1 (10) |' in (out / 'study' / 'report.md').read_text()
  assert not (out / 'study' / 'data').exists()  # the data set lives in the shared data dir

  readme = open(os.path.join(ROOT, 'README.md')).read()
  example = re.search(r'## Python API\n\n```python\n(.*?)```', readme, re.S).group(1)
  example = example.replace('presets.data_config()', "presets.data_config('tiny')")
  example = example.replace("'runs/vgg/checkpoint'", repr(str(ckpt)))
  assert "presets.data_config('tiny')" in example and str(ckpt) in example
  script = example + '\nprint(len(result.records), list(result.summary["metric"])[:2])\n'
  proc = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().endswith("32 ['accuracy', 'roc_auc']"), proc.stdout[-500:]


def test_the_train_and_score_configs_name_a_size_and_a_data_set():
  from configs import score_phantom, train_phantom  # pylint: disable=g-import-not-at-top
  for module in (train_phantom, score_phantom):
    assert module.get_config().to_dict() == module.get_config('phantom').to_dict()
    assert module.get_config('tiny').data.to_dict() == presets.data_config('tiny').to_dict()
    for arg in ('siim,tiny', 'tiny,siim'):
      assert module.get_config(arg).data.to_dict() == presets.data_config('tiny', 'siim').to_dict()
    assert module.get_config('nih').data.to_dict() == presets.data_config('', 'nih').to_dict()
    for bad in ('tiny,large', 'siim,nih', 'mimic', 'tiny,'):
      with pytest.raises(BadInput, match=f"bad config argument '{bad}'"):
        module.get_config(bad)
  assert train_phantom.get_config('tiny').train.augment == 'shift'
  assert train_phantom.get_config('tiny,siim').train.augment == 'crop_rotate'


@pytest.mark.slow  # two command-line runs on a fixture SIIM tree: about a minute
def test_train_then_score_a_prepared_real_data_set(tmp_path):
  """``cam_jax prepare`` a SIIM-style tree, then ``train`` and ``score`` on it by name; the
  scored records are the test split's images with their fixture labels and masks."""
  n = 40
  pictures, masks = xf.shapes(n, 1024, seed=7)
  ids = xf.siim_tree(str(tmp_path / 'siim'), pictures, masks)
  data_args = [f'--config.data.manual_dir={tmp_path / "siim"}',
               f'--config.data_dir={tmp_path / "data"}', '--config.data.validation_fraction=0.25',
               '--config.data.test_fraction=0.25', '--config.data.progress=False']
  code, err = _run('train', f'--config={_config("train_phantom.py")}:tiny,siim', *data_args,
                   f'--workdir={tmp_path / "train"}', cwd=tmp_path)
  assert code == 0, err[-5:]
  ckpt = tmp_path / 'train' / 'checkpoint'
  assert (ckpt / 'model.json').exists()
  code, err = _run('score', f'--config={_config("score_phantom.py")}:tiny,siim', *data_args,
                   f'--config.checkpoint={ckpt}', '--config.score.n_resamples=50',
                   f'--workdir={tmp_path / "score"}', cwd=tmp_path)
  assert code == 0, err[-5:]
  [table] = glob.glob(str(tmp_path / 'data' / 'siim' / '*' / '1.0.0' / 'splits.csv'))
  with open(table) as f:
    test_ids = {r['id'] for r in csv.DictReader(f) if r['split'] == 'test'}
  records = pd.read_csv(tmp_path / 'score' / 'records.csv')
  assert set(records['id']) == test_ids and len(records) == len(test_ids) > 0
  truth = {image_id: bool(m.any()) for image_id, m in zip(ids, masks)}
  assert records['label'].tolist() == [int(truth[i]) for i in records['id']]
  assert records['has_mask'].tolist() == [truth[i] for i in records['id']]
  assert records.loc[records['has_mask'], 'ehr_auc'].notna().all()
