"""A study as cells: one per trained model (an architecture and a seed), one for the random
baseline, one for the pairs (agreement, overlays) that needs every model cell first; a shortcut
study (``config.shortcut``) adds a control cell per model, trained without the confounder.

Each cell writes into ``<workdir>/cells/<name>/`` and ends by writing ``done.json`` (its wall
time); a cell without it is unfinished, and running it again resumes it (training from its
newest checkpoint, scoring from the tables it has written). So a killed study started again
skips the finished cells, and a cluster can run each cell as its own job (``--cell=NAME``) and
merge them with ``cam_jax report``.
"""

from __future__ import annotations

import dataclasses
import json
import os

from cam_jax import models
from cam_jax.core.errors import BadInput, MissingInput
from cam_jax.core.text import split_list

CELLS, DONE = 'cells', 'done.json'
BASELINE, PAIRS = 'baseline', 'pairs'


SHORTCUTS = ('', 'tube')


@dataclasses.dataclass(frozen=True)
class Run:
  """One trained model of the study: ``architecture`` trained with ``train.seed + seed``, on the
  study's data or, for a ``control``, on the same images without the confounder."""

  architecture: str
  seed: int
  control: bool = False

  @property
  def name(self) -> str:
    return f'{self.architecture}_s{self.seed}' + ('_control' if self.control else '')

  @property
  def family(self) -> str:
    return models.family(self.architecture)


def architectures(config) -> list[str]:
  """``config.models``, each in the registry, none twice."""
  names = split_list(config.models)
  if not names:
    raise BadInput('config.models is empty; give a comma-separated list of ' +
                   ', '.join(models.names()))
  if len(set(names)) < len(names):
    raise BadInput(f'config.models repeats a model: {config.models!r}')
  return [models.check_name(n) for n in names]


def model_runs(config) -> list[Run]:
  """Every (architecture, seed), seed-major: all first seeds train before any second one."""
  if not isinstance(config.seeds, int) or config.seeds < 1:
    raise BadInput(f'config.seeds must be an int >= 1, got {config.seeds!r}')
  return [Run(a, s) for s in range(config.seeds) for a in architectures(config)]


def runs(config) -> list[Run]:
  """``model_runs`` and, in a shortcut study, each one's control."""
  if config.shortcut not in SHORTCUTS:
    raise BadInput(f'config.shortcut must be one of {SHORTCUTS}, got {config.shortcut!r}')
  controls = [Run(r.architecture, r.seed, True) for r in model_runs(config)]
  return model_runs(config) + (controls if config.shortcut else [])


def plan(config) -> list[str]:
  """The study's cell names in the order they run."""
  return [r.name for r in runs(config)] + [BASELINE, PAIRS]


def path(workdir: str, name: str) -> str:
  return os.path.join(workdir, CELLS, name)


def is_done(workdir: str, name: str) -> bool:
  return os.path.exists(os.path.join(path(workdir, name), DONE))


def mark_done(workdir: str, name: str, seconds: float, devices: str = '') -> None:
  """Writes the cell's ``done.json``: its wall time and the devices it ran on."""
  with open(os.path.join(path(workdir, name), DONE), 'w') as f:
    json.dump({'seconds': round(seconds, 2), 'devices': devices}, f)


def check_done(workdir: str, names: list[str], why: str) -> None:
  """MissingInput naming the cells of ``names`` that have not finished."""
  missing = [n for n in names if not is_done(workdir, n)]
  if missing:
    raise MissingInput(f'{why} needs the cells {", ".join(missing)} of {workdir} to have '
                       'finished (run them with --cell=NAME, or the whole study)')


def records(workdir: str, names: list[str]) -> dict[str, dict]:
  """The ``done.json`` of each finished cell of ``names``: ``seconds``, ``devices``."""
  out = {}
  for n in names:
    if is_done(workdir, n):
      with open(os.path.join(path(workdir, n), DONE)) as f:
        out[n] = json.load(f)
  return out
