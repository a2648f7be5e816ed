"""The report's run metadata: config, package versions, git commit, devices, cell durations."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess

import jax

from cam_jax.report import tables

PACKAGES = ('cam_jax', 'jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'numpy',
            'scipy', 'pandas')


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def git_commit() -> str:
  """The commit of the checkout cam_jax is imported from ('+ changes' when its tree differs),
  or 'unknown' outside a git checkout."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    head = subprocess.run(['git', '-C', root, 'rev-parse', '--short', 'HEAD'], check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', root, 'status', '--porcelain', '--untracked-files=no'],
                           check=True, capture_output=True, text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return head + (' + uncommitted changes' if dirty else '')


def devices() -> str:
  """'8 x cpu (cpu)': this process's devices, as a cell records them."""
  found = jax.devices()
  return f'{len(found)} x {found[0].platform} ({found[0].device_kind})'


def lines(config_json: str, cells_run: dict[str, dict]) -> list[str]:
  """The section's Markdown lines; ``cells_run``: cell -> its ``seconds`` and ``devices``."""
  ran_on = sorted({c.get('devices', '') for c in cells_run.values()} - {''})
  out = ['## Run metadata', '',
         f'- git commit of the report: {git_commit()}',
         f'- devices the cells ran on: {", ".join(ran_on) or "not recorded"}',
         '- packages: ' + ', '.join(f'{p} {_version(p)}' for p in PACKAGES), '']
  if cells_run:
    seconds = {n: float(c['seconds']) for n, c in cells_run.items()}
    out += ['Wall time per cell (training, scoring and checks; from its `done.json`), '
            f'{sum(seconds.values()) / 60:.1f} min summed over the cells (more than the study\'s '
            'wall time when cells ran side by side, `--workers`):', '',
            tables.markdown(['cell', 'seconds'], [[n, f'{s:.1f}'] for n, s in seconds.items()]),
            '']
  out += ['The config (`config.json`):', '', '```json', config_json, '```', '']
  return out
