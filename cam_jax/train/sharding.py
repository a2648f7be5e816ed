"""Parameter sharding rules kept as data: ``(regex over a leaf's path, rule)``, first match wins.

``replicate`` copies a leaf to every device. ``fsdp`` (fully sharded data parallel, Zhao et al.,
VLDB 2023; ZeRO-3, Rajbhandari et al., SC 2020) splits a leaf's largest axis that the size of
the mesh's ``fsdp`` axis divides over that axis, for leaves of at least ``min_size`` elements;
XLA gathers them where a layer needs them. The batch is split over every device either way.
Paths are the ``/``-joined keys of the train-state tree, so one rule covers a parameter and its
optimizer moments alike.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from cam_jax.core.errors import BadInput
from cam_jax.core.mesh import FSDP_AXIS

REPLICATE, FSDP = 'replicate', 'fsdp'
STRATEGIES = {
    REPLICATE: ((r'.*', REPLICATE),),
    FSDP: ((r'.*/(kernel|embedding|pos_embed|cls_token)(/value)?', FSDP), (r'.*', REPLICATE)),
}
MIN_FSDP_SIZE = 2 ** 14


def partition_spec(path: str, shape: tuple[int, ...], rules, fsdp_size: int,
                   min_size: int = MIN_FSDP_SIZE) -> P:
  """The PartitionSpec the first rule matching ``path`` gives a leaf of ``shape`` on a mesh
  whose ``fsdp`` axis has ``fsdp_size`` devices."""
  for pattern, rule in rules:
    if re.fullmatch(pattern, path):
      if rule == REPLICATE or fsdp_size == 1 or int(np.prod(shape)) < min_size:
        return P()
      for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp_size == 0:
          return P(*[FSDP_AXIS if a == axis else None for a in range(len(shape))])
      return P()
  raise ValueError(f'no sharding rule matches {path!r}; rules: {[r for r, _ in rules]}')


def tree_shardings(tree, mesh, strategy: str = REPLICATE, min_size: int = MIN_FSDP_SIZE):
  """A NamedSharding for every leaf of ``tree`` (arrays or ShapeDtypeStructs)."""
  if strategy not in STRATEGIES:
    raise BadInput(f'unknown parameter sharding {strategy!r}; choose one of: '
                   f'{", ".join(STRATEGIES)}')
  rules, size = STRATEGIES[strategy], mesh.shape[FSDP_AXIS]

  def one(path, leaf):
    key = '/' + jax.tree_util.keystr(path, simple=True, separator='/')
    return NamedSharding(mesh, partition_spec(key, np.shape(leaf), rules, size, min_size))

  return jax.tree_util.tree_map_with_path(one, tree)
