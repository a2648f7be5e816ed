"""Train / validation / test assignment of decoded records: whole groups, stratified by label,
seeded.

A group is a connected set of records sharing a patient id or identical pixels (the digest of
the decoded image), so no patient and no duplicated image is in two splits. Groups are shuffled
within their label stratum (a group is positive when any of its records is) and cut at the
cumulative record counts the fractions ask for.
"""

from __future__ import annotations

import numpy as np

SPLITS = ('train', 'validation', 'test')


def groups(patients: list[str], pixels: list[str]) -> np.ndarray:
  """A group index per record: union-find over equal non-empty patient ids and equal digests."""
  parent = list(range(len(patients)))

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for keys in (patients, pixels):
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
      if key:
        j = first.setdefault(key, i)
        parent[root(i)] = root(j)
  roots = [root(i) for i in range(len(patients))]
  _, index = np.unique(roots, return_inverse=True)
  return index


def assign(group: np.ndarray, labels: np.ndarray, fractions: tuple[float, float, float],
           seed: int) -> np.ndarray:
  """The split name of every record; ``fractions`` for train, validation and test."""
  group, labels = np.asarray(group), np.asarray(labels)
  n_groups = int(group.max()) + 1 if len(group) else 0
  size = np.bincount(group, minlength=n_groups)
  positive = np.bincount(group, weights=labels, minlength=n_groups) > 0
  bounds = np.cumsum(fractions) / np.sum(fractions)
  rng = np.random.default_rng(seed)
  split_of_group = np.empty(n_groups, np.int64)
  for stratum in (False, True):
    members = rng.permutation(np.flatnonzero(positive == stratum))
    if not len(members):
      continue
    done = np.cumsum(size[members])
    middle = (done - size[members] / 2) / done[-1]  # where each group sits in the stratum
    split_of_group[members] = np.searchsorted(bounds, middle, side='right').clip(0, 2)
  return np.array(SPLITS)[split_of_group[group]]
