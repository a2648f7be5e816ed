"""One style for the whole tree: ruff's checks as configured in pyproject.toml, and every
block indented by exactly 2 spaces more than the one it sits in."""

import io
import os
import subprocess
import sys
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ('cam_jax', 'configs', 'launch', 'tests')
INDENT = 2


def _python_files():
  for folder in FOLDERS:
    for here, _, files in os.walk(os.path.join(ROOT, folder)):
      yield from (os.path.join(here, f) for f in sorted(files) if f.endswith('.py'))


def block_indent_errors(source: str) -> list[int]:
  """Lines whose block is not indented exactly ``INDENT`` spaces past the enclosing block."""
  levels, bad = [0], []
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.INDENT:
      width = len(tok.string.expandtabs(8))
      if '\t' in tok.string or width != levels[-1] + INDENT:
        bad.append(tok.start[0])
      levels.append(width)
    elif tok.type == tokenize.DEDENT:
      levels.pop()
  return bad


def test_the_indentation_check_catches_four_spaces():
  assert block_indent_errors('def f():\n  if x:\n    return 1\n') == []
  assert block_indent_errors('def f():\n    return 1\n') == [2]
  assert block_indent_errors('def f():\n  if x:\n      return 1\n') == [3]


def test_every_block_is_indented_by_two_spaces():
  bad = {os.path.relpath(p, ROOT): lines for p in _python_files()
         if (lines := block_indent_errors(open(p).read()))}
  assert not bad, bad


def test_ruff_finds_nothing():
  proc = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', *FOLDERS],
                        cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
