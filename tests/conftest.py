"""Test setup: 8 host CPU devices (for the sharding tests), one data directory for the whole
session (``$CAM_JAX_DATA_DIR``, inherited by the CLI subprocesses, as is the compilation cache's
``$CAM_JAX_COMPILE_CACHE``), a tiny prepared phantom."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()

import pytest  # pylint: disable=g-import-not-at-top

from cam_jax import presets  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='session')
def tiny_data_config():
  return presets.data_config('tiny')


@pytest.fixture(scope='session', autouse=True)
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('data'))
  os.environ['CAM_JAX_DATA_DIR'] = path  # no test writes to the user's cache
  os.environ['CAM_JAX_COMPILE_CACHE'] = str(tmp_path_factory.mktemp('xla'))  # nor to its XLA one
  return path


@pytest.fixture(scope='session')
def tiny_splits(tiny_data_config, data_dir):
  from cam_jax import data  # pylint: disable=g-import-not-at-top
  return {s: data.open_split(tiny_data_config, s, data_dir)
          for s in ('train', 'validation', 'test')}
