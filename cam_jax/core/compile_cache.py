"""JAX's persistent compilation cache for the command line: a second run of a program (a study's
second seed, a resumed study, a rerun bench) loads its XLA executables instead of compiling them.

The directory: ``$CAM_JAX_COMPILE_CACHE`` (``off`` disables it), else
``$XDG_CACHE_HOME/cam_jax/xla`` (``~/.cache`` when unset). Programs that compile in under
``MIN_COMPILE_SECONDS`` are not stored.
"""

from __future__ import annotations

import os

import jax

ENV = 'CAM_JAX_COMPILE_CACHE'
MIN_COMPILE_SECONDS = 0.5


def directory() -> str | None:
  """Where the cache lives, or None when ``$CAM_JAX_COMPILE_CACHE`` is 'off'."""
  chosen = os.environ.get(ENV, '')
  if chosen.lower() == 'off':
    return None
  cache_home = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return chosen or os.path.join(cache_home, 'cam_jax', 'xla')


def enable(path: str | None = None) -> str | None:
  """Points JAX's persistent compilation cache at ``path`` (default ``directory()``); returns
  it."""
  path = path or directory()
  if path:
    os.makedirs(path, exist_ok=True)
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS)
  return path


def directory_in_use() -> str | None:
  """The directory this process's cache was pointed at, None when it is off: what a worker
  process is given to share it."""
  return jax.config.jax_compilation_cache_dir or None
