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


def lines(config_json: str, durations: dict[str, float]) -> list[str]:
  """The section's Markdown lines."""
  devices = jax.devices()
  out = ['## Run metadata', '',
         f'- git commit: {git_commit()}',
         f'- devices: {len(devices)} x {devices[0].platform} ({devices[0].device_kind})',
         '- packages: ' + ', '.join(f'{p} {_version(p)}' for p in PACKAGES), '']
  if durations:
    out += ['Wall time per cell (training, scoring and checks; from its `done.json`), '
            f'{sum(durations.values()) / 60:.1f} min in all:', '',
            tables.markdown(['cell', 'seconds'], [[n, f'{s:.1f}'] for n, s in durations.items()]),
            '']
  out += ['The config (`config.json`):', '', '```json', config_json, '```', '']
  return out
