"""Device mesh and shardings: a 2-D mesh with axes ``data`` and ``fsdp``.

A batch is split over both axes (every device holds ``batch / devices`` rows); the train state
is replicated, or split over ``fsdp`` by the rules of ``cam_jax.train.sharding``. The default
mesh has ``fsdp`` of size 1: pure data parallelism.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cam_jax.core.errors import BadInput

DATA_AXIS, FSDP_AXIS = 'data', 'fsdp'
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)


def make_mesh(devices=None, fsdp: int = 1) -> Mesh:
  """A ``(devices / fsdp, fsdp)`` mesh over ``devices`` (all devices by default) with axes
  ``data`` and ``fsdp``; ``fsdp = -1`` puts every device on ``fsdp``. On an accelerator, devices
  that share fast links are kept together on ``fsdp`` (``mesh_utils.create_device_mesh``)."""
  devices = jax.devices() if devices is None else list(devices)
  n = len(devices)
  fsdp = n if fsdp == -1 else fsdp
  if fsdp < 1 or n % fsdp:
    raise BadInput(f'the fsdp axis ({fsdp} devices) must divide the {n} devices (or be -1: '
                   'all of them)')
  grid = (mesh_utils.create_device_mesh((n // fsdp, fsdp), devices) if n > 1
          else np.asarray(devices).reshape(1, 1))
  return Mesh(grid, BATCH_AXES)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  """``tree`` (arrays on one device, or on the host) copied to every device of ``mesh``. In a
  multi-process job each process supplies its own devices' copy of the same values, so nothing
  crosses hosts (``jax.device_put`` would need a cross-host transfer there)."""
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def one(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(one, tree)


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Split on the leading (batch) axis over every device of the mesh."""
  return NamedSharding(mesh, P(BATCH_AXES))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise BadInput(f'batch size {batch_size} is not divisible by the {n} devices of the mesh; '
                   f'use a multiple of {n}')


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """This process's rows of a batch -> global ``jax.Array`` s split over every device."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items() if np.asarray(v).dtype.kind in 'biuf'}


def local_rows(array: np.ndarray) -> np.ndarray:
  """This process's share of a global host batch: rows ``[p * n / P, (p + 1) * n / P)``."""
  n, p, count = len(array), jax.process_index(), jax.process_count()
  return array[p * n // count:(p + 1) * n // count]


def to_host(tree):
  """Global ``jax.Array`` s (a tree of them) on the host of every process: an all-gather of
  what lives on other hosts; a PRNG key array stays a key array."""
  leaves = jax.tree.leaves(tree)
  if all(getattr(x, 'is_fully_addressable', True) or x.is_fully_replicated for x in leaves):
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True))
                      if not x.is_fully_replicated else jax.device_get(x), tree)


def same_targets(target: int, n: int, mesh: Mesh) -> jax.Array:
  """``(n,)`` int32 targets, every one ``target``, split like a batch: the one explained sign or
  class of a batch of ``n`` images."""
  return jax.device_put(np.full((n,), target, np.int32), data_sharded(mesh))


def jit_on_mesh(fn, mesh: Mesh, *, replicated_args: int, sharded_args: int):
  """``jax.jit(fn)`` whose first ``replicated_args`` arguments (states) are copied to every
  device and next ``sharded_args`` (per-image arrays) split like a batch, as is its output."""
  rep, dat = replicated(mesh), data_sharded(mesh)
  return jax.jit(fn, in_shardings=(rep,) * replicated_args + (dat,) * sharded_args,
                 out_shardings=dat)
