"""Runs a study: ``cam_jax study --config=configs/study_phantom.py --workdir=DIR [--cell=NAME]``.

Without ``--cell`` every unfinished cell runs, then the report is written; with it only that
cell (``<model>_s<seed>``, ``baseline`` or ``pairs``, see ``cam_jax.study.cells``), so that a
cluster runs the cells as separate jobs and ``cam_jax report --workdir=DIR`` merges them.
``--workers=N`` runs N cells at a time on a CPU host (default: ``study.run.default_workers``).
"""

from absl import flags
from ml_collections import config_flags

from cam_jax.cli import common
from cam_jax.study import run, run_study

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Study config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)
_CELL = flags.DEFINE_string('cell', '', 'Run only this cell (<model>_s<seed>, baseline, pairs).')
_WORKERS = flags.DEFINE_integer(
    'workers', 0, 'Cells at a time, each in a process of its own (CPU hosts only); 0: 2 on a CPU '
    'host with two cores or more, else 1.')


def main(argv):
  del argv
  run_study(_CONFIG.value, _WORKDIR.value, cell=_CELL.value, log=common.log,
            workers=_WORKERS.value or run.default_workers())
