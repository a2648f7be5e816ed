"""Where prepared data sets live: one directory shared by every verb and run (TFDS's
convention: ``<data dir>/<data set>/<config>/<version>``, the config named by a digest of the
settings), so prepare, train, score and study read one copy of each data set."""

from __future__ import annotations

import contextlib
import os

import filelock

ENV_VAR = 'CAM_JAX_DATA_DIR'


def data_dir(configured: str | None = None) -> str:
  """``configured`` when given (``config.data_dir``), else ``$CAM_JAX_DATA_DIR``, else
  ``$XDG_CACHE_HOME/cam_jax/datasets`` (``~/.cache/cam_jax/datasets``), as an absolute path."""
  if not configured:
    configured = os.environ.get(ENV_VAR) or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache'), 'cam_jax', 'datasets')
  return os.path.abspath(os.path.expanduser(configured))


@contextlib.contextmanager
def preparing(path: str):
  """Holds ``<path>.lock`` while ``path`` is prepared, so two processes preparing the same data
  set take turns: the second finds the first one's result instead of writing it again."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with filelock.FileLock(path + '.lock'):
    yield


def prepared(make, prepare):
  """``(builder, fresh)``: ``make()``'s builder, prepared first with ``prepare(builder)`` unless
  its directory exists (TFDS renames a finished preparation into place, so a half-written one is
  never taken for done); under ``preparing``, so concurrent callers prepare it once."""
  found = make()
  if os.path.isdir(found.data_dir):
    return found, False
  with preparing(found.data_dir):
    found = make()  # reads the data set's info from disk when another process wrote it
    if os.path.isdir(found.data_dir):
      return found, False
    prepare(found)
    return found, True
