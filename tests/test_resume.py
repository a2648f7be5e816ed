"""Training survives being stopped: a run killed with SIGKILL at a random step, or stopped with
SIGTERM, and started again with the same command ends with exactly the weights of a run never
interrupted (vgg_tiny: its batch statistics and dropout RNG resume too); a corrupt newest
checkpoint falls back to the one before; another run's checkpoints are refused with the fields
that differ."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cam_jax import presets
from cam_jax.core import mesh as mesh_lib
from cam_jax.models import checkpoint
from cam_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAM_JAX = os.path.join(os.path.dirname(sys.executable), 'cam_jax')
EPOCHS, STEPS_PER_EPOCH = 3, 4  # the tiny phantom: 64 training images, batches of 16
ARGS = ['train', f'--config={os.path.join(ROOT, "configs", "train_phantom.py")}:tiny',
        '--config.model.name=vgg_tiny', f'--config.train.epochs={EPOCHS}',
        '--config.train.checkpoint_every_steps=1',
        '--config.train.log_every_steps=1']


def _start(workdir):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}
  return subprocess.Popen([CAM_JAX, *ARGS, f'--workdir={workdir}'], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run(workdir):
  proc = _start(workdir)
  out = proc.communicate(timeout=600)[0]
  assert proc.returncode == 0, out
  return out


def _started_step(workdir, step, proc):
  """Waits until the run has logged ``step`` (the step is done; later ones may be too)."""
  log = os.path.join(workdir, 'train_log.jsonl')
  deadline = time.time() + 300
  while time.time() < deadline:
    assert proc.poll() is None, proc.communicate()[0]
    if os.path.exists(log):
      steps = [json.loads(line).get('step', 0) for line in open(log) if line.endswith('\n')]
      if steps and max(steps) >= step:
        return
    time.sleep(0.05)
  raise AssertionError(f'step {step} not reached in time')


def _weights(workdir):
  tree = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoint_last', 'weights'))
  return jax.tree_util.tree_leaves_with_path(tree)


def _assert_identical(a, b):
  assert len(a) == len(b)
  for (path, x), (_, y) in zip(a, b):
    assert np.array_equal(x, y), jax.tree_util.keystr(path)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('whole'))
  _run(workdir)
  return _weights(workdir)


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_restart_ends_bit_identical(tmp_path, uninterrupted):
  kill_at = int(np.random.default_rng(20261203).integers(2, EPOCHS * STEPS_PER_EPOCH - 1))
  workdir = str(tmp_path)
  proc = _start(workdir)
  _started_step(workdir, kill_at, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'train_state')) if s.isdigit())
  assert saved and max(saved) < EPOCHS * STEPS_PER_EPOCH
  out = _run(workdir)
  assert 'resumed from step' in out
  _assert_identical(_weights(workdir), uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_exits_0_and_resumes_where_it_stopped(tmp_path, uninterrupted):
  workdir = str(tmp_path)
  proc = _start(workdir)
  _started_step(workdir, 3, proc)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, out
  stopped = int(out.split('stopped by SIGTERM at step ')[1].split('/')[0])
  assert str(stopped) in os.listdir(os.path.join(workdir, 'train_state'))
  assert not os.path.exists(os.path.join(workdir, 'checkpoint_last'))
  out = _run(workdir)
  assert f'resumed from step {stopped}/{EPOCHS * STEPS_PER_EPOCH}' in out
  _assert_identical(_weights(workdir), uninterrupted)


@pytest.mark.slow
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tiny_splits, tmp_path):
  cfg = presets.train_config('tiny')
  cfg.epochs = 2
  mesh, logs = mesh_lib.make_mesh(jax.devices()[:1]), []
  train = lambda: loop.train(checkpoint.recipe('resnet_tiny', 1, 32, 0), cfg,
                             tiny_splits['train'], tiny_splits['validation'],
                             workdir=str(tmp_path), mesh=mesh, log=logs.append)
  first = train().model
  newest = tmp_path / 'train_state' / str(2 * STEPS_PER_EPOCH) / 'state'
  for root, _, files in os.walk(newest):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\0')  # every file of the newest step truncated to one byte
  again = train().model
  assert any(f'checkpoint step {2 * STEPS_PER_EPOCH}' in m and 'does not read back' in m
             and f'resumed from step {STEPS_PER_EPOCH}' in m for m in logs)
  x = np.asarray(tiny_splits['test'][0]['image'], np.float32)[None] / 255.0
  np.testing.assert_array_equal(again(x), first(x))  # retrained the last epoch exactly
  cfg.learning_rate = 0.01
  with pytest.raises(ValueError, match=r'another run .*train\.learning_rate: 0\.001 in the '
                     r'checkpoint, 0\.01 now'):
    train()
