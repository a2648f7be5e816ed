"""The benchmark harness: ratios against the group's reference, and the bench entry point."""

import os
import runpy
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from cam_jax import bench
from cam_jax.bench import suites
from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ratios_are_relative_to_the_group_reference():
  calls = {'a': 0, 'b': 0}

  def counted(key):
    def fn():
      calls[key] += 1
      return np.zeros(1)
    return fn

  table = bench.run([bench.Case('ref', counted('a'), 10, 'g', reference=True),
                     bench.Case('other', counted('b'), 30, 'g'),
                     bench.Case('alone', counted('b'), 5, 'h')], warmup=2, repeats=3,
                    log=lambda m: None)
  assert calls == {'a': 5, 'b': 10}  # warmup + repeats per case
  ref, other, alone = (table.iloc[i] for i in range(3))
  assert ref['ratio'] == 1.0
  np.testing.assert_allclose(other['ratio'], other['items_per_s'] / ref['items_per_s'])
  np.testing.assert_allclose(other['items_per_s'], 30 / other['median_s'])
  assert np.isnan(alone['ratio'])  # no reference in its group
  assert '| g | other |' in bench.markdown(table)


def test_data_suite_times_prepare_and_pipeline(tmp_path):
  from cam_jax.bench import suites  # pylint: disable=g-import-not-at-top
  from configs import bench_data  # pylint: disable=g-import-not-at-top
  text = suites.run_suite(bench_data.get_config('tiny'), str(tmp_path), log=lambda m: None)
  for row in ('| prepare 4 x 1024 px JPEG DICOM, 1 process | decode | ',
              '| prepare 4 x 1024 px JPEG DICOM, 1 process | decode + resize to 64 px | ',
              '| pipeline 64 px, batch 2 | read + crop_rotate + batch, 1 threads | ',
              '| pipeline 64 px, batch 2 | read + crop_rotate + batch, 2 threads | '):
    assert row in text, text


@pytest.mark.slow
def test_bench_entry_point_writes_its_table(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-m', 'launch.bench', '--config=configs/bench.py:tiny',
                  f'--workdir={tmp_path}', '--config.models=resnet_tiny'], cwd=root, check=True,
                 capture_output=True, env={**os.environ, 'XLA_FLAGS': ''}, timeout=300)
  text = open(tmp_path / 'bench.md').read()
  for case in ('forward', 'gradcam raw (layer4)', 'scorecam raw (layer4)',
               'gradcam + postprocess + metrics',
               'forward (streamed)', 'cam_jax.score (streamed)'):
    assert f'| {case} |' in text


@pytest.mark.slow
def test_zoo_suite_times_cam_jax_beside_torch(tmp_path):
  pytest.importorskip('torch')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, '-m', 'launch.bench', '--config=configs/bench_zoo.py:tiny',
                         f'--workdir={tmp_path}'], cwd=root, check=True, capture_output=True,
                        text=True, env={**os.environ, 'XLA_FLAGS': ''}, timeout=300)
  text = open(tmp_path / 'bench.md').read()
  assert '| resnet18 64px b2 | cam_jax forward (jit) |' in text and 'torch forward (eager' in text
  assert 'resnet18: max |cam_jax - torch| / max |torch| =' in proc.stdout


@pytest.mark.slow
def test_cams_vs_torch_suite_times_pytorch_grad_cam_beside_cam_jax(tmp_path):
  from cam_jax.testing import pytorch_grad_cam_import  # pylint: disable=g-import-not-at-top
  pytest.importorskip('torch')
  try:
    pytorch_grad_cam_import.import_pytorch_grad_cam()
  except ImportError as e:
    pytest.skip(f'pytorch-grad-cam is not installed ({e})')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-m', 'launch.bench', '--config=configs/bench_cams_torch.py:tiny',
                  f'--workdir={tmp_path}'], cwd=root, check=True, capture_output=True,
                 env={**os.environ, 'XLA_FLAGS': ''}, timeout=300)
  text = open(tmp_path / 'bench.md').read()
  for case in ('cam_jax forward (jit)', 'cam_jax gradcam heat maps', 'pytorch-grad-cam gradcam'):
    assert f'| resnet18 64px b2 | {case} |' in text


@pytest.mark.slow
def test_scoring_suite_times_device_metrics_beside_host_metrics(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-m', 'launch.bench', '--config=configs/bench_scoring.py:tiny',
                  f'--workdir={tmp_path}'], cwd=root, check=True, capture_output=True,
                 env={**os.environ, 'XLA_FLAGS': ''}, timeout=300)
  text = open(tmp_path / 'bench.md').read()
  for case in ('gradcam heat maps to host', 'cam_jax.score, localisation metrics on device',
               'heat maps to host + NumPy metrics per image',
               'cam_jax.score, + deletion_insertion'):
    assert f'| resnet_tiny 32px data set | {case} |' in text, case


def test_a_bench_whose_data_has_another_size_than_its_models_is_refused(tmp_path):
  config = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), 'configs', 'bench.py'))['get_config']('tiny')
  config.image_size = 64  # the data set stays at the tiny 32 px
  with pytest.raises(BadInput, match='config.image_size is 64 but config.data.image_size is 32'):
    suites.run_suite(config, str(tmp_path))


def test_a_bench_without_its_peer_packages_is_refused_before_any_part(tmp_path, monkeypatch):
  config = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), 'configs', 'bench_accelerator.py'))['get_config']('tiny')
  find_spec = suites.importlib.util.find_spec
  monkeypatch.setattr(suites.importlib.util, 'find_spec',
                      lambda name: None if name == 'quantus' else find_spec(name))
  with pytest.raises(BadInput, match=r'cams/cams/peer bench needs quantus, which this'):
    suites.run_suite(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # no part ran


@pytest.mark.parametrize('name', [pytest.param('resnet18', marks=pytest.mark.slow), 'vit_ti16'])
def test_torch_and_cam_jax_train_steps_train_the_same_thing(name):
  """Same weights, batch, loss and AdamW: the losses of three float32 steps agree, the first
  (the loss at the loaded weights) to 1e-5 and the two after updates to 1e-3 of it."""
  pytest.importorskip('torch')
  config = runpy.run_path(os.path.join(ROOT, 'configs/bench_train.py'))['get_config']('tiny')
  ours, theirs = suites.train_steps(name, config, 'float32', mesh_lib.make_mesh(jax.devices()[:1]))
  mine = np.array([float(ours()[1]) for _ in range(3)])
  torchs = np.array([float(theirs()) for _ in range(3)])
  assert abs(mine[0] - torchs[0]) <= 1e-5 * torchs[0]
  np.testing.assert_allclose(mine, torchs, rtol=0, atol=1e-3 * torchs[0])
  assert torchs[2] < 0.5 * torchs[0]  # the optimiser moved the weights: the later steps test it


@pytest.mark.slow
def test_train_suite_times_both_dtypes_beside_torch_and_the_phantom_loop(tmp_path):
  pytest.importorskip('torch')
  proc = subprocess.run([sys.executable, '-m', 'launch.bench',
                         '--config=configs/bench_train.py:tiny', f'--workdir={tmp_path}'],
                        cwd=ROOT, check=True, capture_output=True, text=True,
                        env={**os.environ, 'XLA_FLAGS': ''}, timeout=600)
  table = pd.read_csv(tmp_path / 'bench.csv')
  assert list(table['group']) == [f'resnet18 64px b2 {d}' for d in ('float32', 'bfloat16')
                                  for _ in range(2)]
  assert list(table['case'][::2]) == ['cam_jax train step (jit)'] * 2
  assert all(c.startswith('torch train step (eager, cpu') for c in table['case'][1::2])
  assert list(table['ratio'][1::2]) == [1.0, 1.0]  # torch is each dtype's reference
  for dtype in ('float32', 'bfloat16'):
    assert f'resnet18 {dtype}: losses of the first 3 steps cam_jax' in proc.stdout
  loops = pd.read_csv(tmp_path / 'loop.csv')
  assert loops[['model', 'dtype', 'steps']].values.tolist() == [['resnet18', 'float32', 4]]
  assert 0.0 <= loops['input_wait_fraction'][0] <= 1.0 and loops['images_per_s'][0] > 0
  assert (tmp_path / 'loop_resnet18.jsonl').exists()
  text = open(tmp_path / 'bench.md').read()
  assert ('| model | float32 cam_jax | float32 torch | float32 cam_jax/torch | bfloat16 cam_jax |'
          ' bfloat16 torch | bfloat16 cam_jax/torch | loop (float32) images/s | loop input wait |'
          in text)
  assert '\n| resnet18 | ' in text


@pytest.mark.slow
def test_the_accelerator_bench_runs_its_parts_with_dtypes_and_batch_sizes(tmp_path):
  from configs import bench_accelerator  # pylint: disable=g-import-not-at-top
  full = bench_accelerator.get_config()
  assert full.parts == 'cams,sweep,peer' and full.cams.dtypes == 'float32,bfloat16'
  assert full.cams.image_size == full.peer.image_size == 224
  config = bench_accelerator.get_config('tiny')
  config.parts = 'cams,sweep'  # the peer part has its own test (tests/test_bench_peer.py)
  text = suites.run_suite(config, str(tmp_path), log=lambda m: None)
  assert text.index('## cams') < text.index('## sweep')
  for group in ('resnet_tiny b8', 'resnet_tiny b8 bfloat16', 'resnet_tiny b16 bfloat16',
                'resnet_tiny data set', 'resnet_tiny data set bfloat16'):
    assert f'| {group} |' in text, group
  assert 'Device memory high-water mark after sweep: not reported' in text  # CPU
  table = pd.read_csv(tmp_path / 'sweep' / 'bench.csv')
  assert set(table['group']) == {'resnet_tiny b8 bfloat16', 'resnet_tiny b16 bfloat16',
                                 'resnet_tiny data set bfloat16'}
  assert (table['items_per_s'] > 0).all()
  config.parts = 'cams,nope'
  with pytest.raises(BadInput, match="config.parts names 'nope'"):
    suites.run_suite(config, str(tmp_path / 'bad'), log=lambda m: None)
