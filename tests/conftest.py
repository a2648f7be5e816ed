"""Test setup: 8 host CPU devices (for the sharding tests) and a tiny prepared phantom data set."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()

import pytest  # pylint: disable=g-import-not-at-top

from configs import phantom_common  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='session')
def tiny_data_config():
  return phantom_common.data_config('tiny')


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='session')
def tiny_splits(tiny_data_config, data_dir):
  from cam_jax import data  # pylint: disable=g-import-not-at-top
  return {s: data.open_split(tiny_data_config, s, data_dir) for s in ('train', 'validation', 'test')}
