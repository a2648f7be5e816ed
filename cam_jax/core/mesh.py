"""Device mesh and shardings: batches split on the ``data`` axis, train state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cam_jax.core.errors import BadInput

DATA_AXIS = 'data'


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (all devices by default) with axis ``data``."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise BadInput(f'batch size {batch_size} is not divisible by the {n} devices of the mesh; '
                   f'use a multiple of {n}')


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Host numpy batch -> global ``jax.Array`` s sharded over ``data`` (multi-host safe)."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items() if np.asarray(v).dtype.kind in 'biuf'}


def local_rows(array: np.ndarray) -> np.ndarray:
  """This process's share of a global host batch: rows ``[p * n / P, (p + 1) * n / P)``."""
  n, p, count = len(array), jax.process_index(), jax.process_count()
  return array[p * n // count:(p + 1) * n // count]


def to_host(x):
  """A global ``jax.Array`` on the host of every process (an all-gather when some of it lives on
  another host); a PRNG key array stays a key array."""
  if getattr(x, 'is_fully_addressable', True):
    return jax.device_get(x)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def same_targets(target: int, n: int, mesh: Mesh) -> jax.Array:
  """``(n,)`` int32 targets, every one ``target``, split on ``data``: the one explained sign or
  class of a batch of ``n`` images."""
  return jax.device_put(np.full((n,), target, np.int32), data_sharded(mesh))


def jit_on_mesh(fn, mesh: Mesh, *, replicated_args: int, sharded_args: int):
  """``jax.jit(fn)`` whose first ``replicated_args`` arguments (states) are copied to every
  device and next ``sharded_args`` (per-image arrays) split on ``data``, as is its output."""
  rep, dat = replicated(mesh), data_sharded(mesh)
  return jax.jit(fn, in_shardings=(rep,) * replicated_args + (dat,) * sharded_args,
                 out_shardings=dat)
