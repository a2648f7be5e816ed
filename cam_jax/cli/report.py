"""Rewrites a study's report from its cells: ``cam_jax report --workdir=DIR``.

Reads ``DIR/config.json`` and the tables of ``DIR/cells/`` (records, sanity, fill check,
agreement, overlays), all written by ``cam_jax study`` (as one job or one job per cell), so a
report can be regenerated, or its statistics changed, without retraining or rescoring; writes
``DIR/report.md`` and ``DIR/report.html`` and prints their paths.
"""

import json
import os

import ml_collections
from absl import flags

from cam_jax import report
from cam_jax.cli import common
from cam_jax.core.errors import MissingInput
from cam_jax.study import write_study_report

_WORKDIR = flags.DEFINE_string('workdir', None, 'A study workdir.', required=True)
_N_RESAMPLES = flags.DEFINE_integer('n_resamples', None, 'Bootstrap resamples (default: the '
                                    "study's).")


def main(argv):
  del argv
  workdir = _WORKDIR.value
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise MissingInput(f'{path} not found: is {workdir} a study workdir?')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if _N_RESAMPLES.value:
    config.score.n_resamples = _N_RESAMPLES.value
  write_study_report(workdir, config)
  for name in (report.REPORT, report.REPORT_HTML):
    common.log(f'report: {os.path.join(workdir, name)}')
