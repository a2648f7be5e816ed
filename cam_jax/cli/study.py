"""Runs a study: ``cam_jax study --config=configs/study_phantom.py --workdir=DIR``."""

from absl import flags
from ml_collections import config_flags

from cam_jax.cli import common
from cam_jax.study import run_study

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Study config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  run_study(_CONFIG.value, _WORKDIR.value, log=common.log)

