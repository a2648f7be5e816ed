"""Benchmarks: ``cam_jax bench --config=configs/bench.py --workdir=DIR`` (suites in
``cam_jax.bench.suites``); writes ``bench.csv`` and ``bench.md`` into the workdir."""

from absl import flags
from ml_collections import config_flags

from cam_jax.bench import suites
from cam_jax.cli import common

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Bench config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  print(suites.run_suite(_CONFIG.value, _WORKDIR.value, log=common.log))
