"""Multi-process jobs: 2 processes on loopback with 4 host CPU devices each train to the weights
of 1 process with 8 devices (to 1e-5) and score its checkpoint to the same records; only process
0 prints and writes; a SIGTERM sent to one process stops both at the same step, from where the
same commands resume.

The runs use SGD: Adam divides a gradient that is only rounding noise (a conv bias that feeds
BatchNorm has a true gradient of 0) by its own RMS and turns summation-order differences between
the two topologies into steps of +-lr; SGD keeps them at rounding size.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAM_JAX = os.path.join(os.path.dirname(sys.executable), 'cam_jax')
EPOCHS = 3  # 4 steps an epoch: the tiny phantom's 64 training images, batches of 16
ARGS = ['train', f'--config={os.path.join(ROOT, "configs", "train_phantom.py")}:tiny',
        '--config.model.name=vgg_tiny', f'--config.train.epochs={EPOCHS}',
        '--config.train.optimizer=sgd', '--config.train.learning_rate=0.05',
        '--config.train.log_every_steps=1']


def _env(devices: int) -> dict:
  return {**os.environ, 'JAX_PLATFORMS': 'cpu',
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start_job(workdir: str, port: int, args=ARGS) -> list[subprocess.Popen]:
  """Processes 0 and 1 of a job (process 0 hosts the coordinator; each waits for the other)."""
  return [subprocess.Popen(
      [CAM_JAX, *args, f'--workdir={workdir}', f'--coordinator_address=localhost:{port}',
       '--num_processes=2', f'--process_id={i}'], env=_env(4), text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]


def _finish(procs) -> list[str]:
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, out + err
  return [out for out, _ in outs]


def _weights(workdir: str):
  tree = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoint_last', 'weights'))
  return jax.tree_util.tree_leaves_with_path(tree)


def _assert_close(a, b, atol):
  assert len(a) == len(b)
  for (path, x), (_, y) in zip(a, b):
    np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def one_process(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('one'))
  out = subprocess.run([CAM_JAX, *ARGS, f'--workdir={workdir}'], env=_env(8), text=True,
                       capture_output=True, timeout=600)
  assert out.returncode == 0, out.stdout + out.stderr
  return workdir


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory, one_process):
  workdir = str(tmp_path_factory.mktemp('two'))
  outs = _finish(_start_job(workdir, _free_port()))
  return workdir, outs


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(one_process, two_processes):
  workdir, (out0, out1) = two_processes
  _assert_close(_weights(one_process), _weights(workdir), atol=1e-5)
  one, two = (pd.read_csv(os.path.join(w, 'history.csv')) for w in (one_process, workdir))
  np.testing.assert_allclose(two['loss'], one['loss'], atol=1e-5)
  np.testing.assert_allclose(two['roc_auc'], one['roc_auc'], atol=1e-5)
  assert f'epoch {EPOCHS}/{EPOCHS}' in out0 and 'epoch' not in out1  # process 0 prints


@pytest.mark.slow
def test_two_processes_score_what_one_process_scores(tmp_path, one_process):
  args = ['score', f'--config={os.path.join(ROOT, "configs", "score_phantom.py")}:tiny',
          f'--config.checkpoint={os.path.join(one_process, "checkpoint")}']
  one = subprocess.run([CAM_JAX, *args, f'--workdir={tmp_path / "one"}'], env=_env(8),
                       text=True, capture_output=True, timeout=600)
  assert one.returncode == 0, one.stdout + one.stderr
  _finish(_start_job(str(tmp_path / 'two'), _free_port(), args))
  a, b = (pd.read_csv(tmp_path / w / 'records.csv') for w in ('one', 'two'))
  assert list(a['id']) == list(b['id']) and len(a) == 32
  numeric = a.select_dtypes('number').columns
  np.testing.assert_allclose(b[numeric], a[numeric], atol=1e-5)


def _logged_step(workdir: str) -> int:
  path = os.path.join(workdir, 'train_log.jsonl')
  if not os.path.exists(path):
    return 0
  return max([json.loads(line).get('step', 0) for line in open(path) if line.endswith('\n')],
             default=0)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_and_they_resume(tmp_path, two_processes):
  workdir = str(tmp_path)
  procs = _start_job(workdir, _free_port())
  deadline = time.time() + 300
  while _logged_step(workdir) < 2:
    assert time.time() < deadline and all(p.poll() is None for p in procs)
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  out0, _ = _finish(procs)
  assert 'stopped by a signal to another process at step' in out0
  stopped = int(out0.split('at step ')[1].split('/')[0])
  assert 2 <= stopped < EPOCHS * 4
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'train_state')) if d.isdigit())
  assert saved[-1] == stopped
  out0, _ = _finish(_start_job(workdir, _free_port()))
  assert f'resumed from step {stopped}/{EPOCHS * 4}' in out0
  _assert_close(_weights(two_processes[0]), _weights(workdir), atol=0)
