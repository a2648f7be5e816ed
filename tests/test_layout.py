"""The house: every module imports only rooms at or below its own, and ``import cam_jax``
loads none of the heavy I/O libraries."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest first; a room may import itself and the rooms before it, never one after it.
ROOMS = ('core', 'presets', 'models', 'data', 'cams', 'metrics', 'analysis', 'train', 'scoring',
         'report', 'study', 'testing', 'bench', 'cli')


def _room(module: str) -> str:
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else ''


def _imports(path: str) -> list[str]:
  tree = ast.parse(open(path).read(), path)
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      out += [node.module] + [f'{node.module}.{a.name}' for a in node.names]
    elif isinstance(node, ast.Import):
      out += [a.name for a in node.names]
  return [m for m in out if m.split('.')[0] == 'cam_jax']


def _modules():
  for folder, _, files in os.walk(os.path.join(ROOT, 'cam_jax')):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        yield path, rel.removesuffix('.__init__')


def test_every_room_is_listed():
  rooms = {_room(m) for _, m in _modules()} - {'', '__main__'}
  assert rooms == set(ROOMS)


def test_no_room_imports_a_room_above_it():
  upward = []
  for path, module in _modules():
    mine = _room(module)
    if mine not in ROOMS:  # cam_jax/__init__.py and __main__.py sit on top
      continue
    for imported in _imports(path):
      theirs = _room(imported)
      if theirs in ROOMS and ROOMS.index(theirs) > ROOMS.index(mine):
        upward.append(f'{module} imports {imported}')
  assert not upward, upward


def test_layout_check_catches_an_upward_import(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('from cam_jax.scoring import driver\n')
  assert 'cam_jax.scoring.driver' in _imports(str(bad))
  assert ROOMS.index(_room('cam_jax.scoring.driver')) > ROOMS.index('cams')


def test_import_cam_jax_loads_no_io_library():
  heavy = ('grain', 'orbax', 'pandas', 'tqdm', 'tensorflow_datasets', 'torch')
  code = (f'import sys, cam_jax; from cam_jax import models, cams; '
          f'print(",".join(m for m in {heavy!r} if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       cwd=str(ROOT), env={**os.environ, 'XLA_FLAGS': ''})
  assert out.stdout.strip() == ''
