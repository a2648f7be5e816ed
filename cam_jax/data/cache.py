"""Where prepared data sets live: one directory shared by every verb and run (TFDS's
convention: ``<data dir>/<data set>/<config>/<version>``, the config named by a digest of the
settings), so prepare, train, score and study read one copy of each data set."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil

import filelock

ENV_VAR = 'CAM_JAX_DATA_DIR'
# Working folders of a preparation, beside its version directory: a builder's own staging
# (``staging.*``) and TFDS's ``incomplete.<random>_<version>``. A run killed outright (SIGKILL,
# power loss) leaves them behind; the next preparation, holding the lock, removes them.
STAGING_PREFIX = 'staging.'
INCOMPLETE_PREFIX = 'incomplete.'


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


def remove_stale(path: str) -> None:
  """Removes the working folders an interrupted preparation of ``path`` left beside it, each
  with a warning line. Call it only holding ``preparing(path)``: then no other process is
  preparing ``path``, so every such folder is stale."""
  parent, version = os.path.split(path)
  stale = sorted(os.path.join(parent, n) for n in os.listdir(parent)
                 if n.startswith(STAGING_PREFIX) or
                 (n.startswith(INCOMPLETE_PREFIX) and n.endswith(f'_{version}')))
  for folder in stale:
    shutil.rmtree(folder)
    logging.getLogger(__name__).warning('removed %s, left by an interrupted preparation of %s',
                                        folder, path)


def prepared(make, prepare):
  """``(builder, fresh)``: ``make()``'s builder, prepared first with ``prepare(builder)`` unless
  its directory exists (TFDS renames a finished preparation into place, so a half-written one is
  never taken for done); under ``preparing``, so concurrent callers prepare it once, and after
  ``remove_stale``."""
  found = make()
  if os.path.isdir(found.data_dir):
    return found, False
  with preparing(found.data_dir):
    found = make()  # reads the data set's info from disk when another process wrote it
    if os.path.isdir(found.data_dir):
      return found, False
    remove_stale(found.data_dir)
    prepare(found)
    return found, True
