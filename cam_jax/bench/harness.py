"""A small benchmark harness: time named cases side by side in one process, report ratios.

Each case is a zero-argument callable returning something ``jax.block_until_ready`` accepts,
and the number of items (images) one call processes. Times are the median of ``repeats`` calls
after ``warmup`` calls (compilation excluded), taken round-robin within each group.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import jax
import pandas as pd


@dataclasses.dataclass
class Case:
  name: str
  fn: Callable[[], object]
  items: int
  group: str = ''          # cases are compared within a group
  reference: bool = False  # the group's denominator for the ratio column


def time_call(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5) -> list[float]:
  """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return times


def run(cases: list[Case], *, warmup: int = 1, repeats: int = 5, log=print) -> pd.DataFrame:
  """One row per case: median seconds, items/s, and the ratio of items/s to its group's reference.

  Every case is warmed up first; then the timed calls go round-robin over the cases of a group,
  so that a change in the machine's load during the run hits each of them alike.
  """
  times = {id(c): [] for c in cases}
  for c in cases:
    time_call(c.fn, warmup=warmup, repeats=0)
  groups = list(dict.fromkeys(c.group for c in cases))
  for group in groups:
    for _ in range(repeats):
      for c in cases:
        if c.group == group:
          times[id(c)] += time_call(c.fn, warmup=0, repeats=1)
  rows = []
  for c in cases:
    med = statistics.median(times[id(c)])
    rows.append({'group': c.group, 'case': c.name, 'items': c.items, 'median_s': med,
                 'min_s': min(times[id(c)]), 'items_per_s': c.items / med,
                 'reference': c.reference})
    log(f'{c.group:>16} | {c.name:<32} {c.items / med:10.1f} items/s')
  table = pd.DataFrame(rows)
  refs = table[table['reference']].set_index('group')['items_per_s']
  table['ratio'] = [r['items_per_s'] / refs[r['group']] if r['group'] in refs else float('nan')
                    for _, r in table.iterrows()]
  return table.drop(columns='reference')


def markdown(table: pd.DataFrame) -> str:
  lines = ['| group | case | images/s | ratio | median s |', '|---|---|---|---|---|']
  for _, r in table.iterrows():
    lines.append(f"| {r['group']} | {r['case']} | {r['items_per_s']:.1f} | {r['ratio']:.2f}x | "
                 f"{r['median_s']:.4f} |")
  return '\n'.join(lines)
