"""A known-truth check of deletion fills: on healthy images, does removing pixels raise the
probability of the finding?

On an image without the finding, the pixels a random order removes carry no evidence of it, so
a fill that keeps the image in distribution leaves the probability where it was; a fill that
raises it creates the cue it is supposed to remove (the phantom draws a pneumothorax as lung
without vessel texture, and 'mean' and 'blur' erase the texture). ``fill_check`` measures that
per fill with ``faithfulness.fill_cue`` over random orders, paired across fills: every fill sees
the same orders.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from cam_jax import cams
from cam_jax.analysis import statistics
from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.metrics import faithfulness
from cam_jax.models import checkpoint
from cam_jax.scoring import driver

SUMMARY_COLUMNS = ['fill', 'value', 'low', 'high', 'n', 'final', 'final_low', 'final_high']


@dataclasses.dataclass
class FillCheck:
  """Per healthy image and fill: ``records`` (id, fill, prob, change, change@0..n_steps);
  ``summary``: one row per fill, the mean ``change`` (value, low, high: a percentile-bootstrap
  95% CI) and the mean change with every pixel removed (final, final_low, final_high)."""
  records: pd.DataFrame
  summary: pd.DataFrame


def _summary(records, n_resamples, seed):
  last = [c for c in records if c.startswith('change@')][-1]
  rows = []
  for fill, group in records.groupby('fill', sort=False):
    value = statistics.bootstrap_ci(group['change'].to_numpy(), n_resamples=n_resamples, seed=seed)
    final = statistics.bootstrap_ci(group[last].to_numpy(), n_resamples=n_resamples, seed=seed)
    rows.append((fill, *value, len(group), *final))
  return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _frame(batch, out, fill):
  valid = np.asarray(batch['valid'], bool)
  columns = {'id': np.asarray(batch['id']).astype(str), 'fill': fill,
             'prob': np.asarray(out['prob'], np.float64),
             'change': np.asarray(out['change'], np.float64)}
  curve = np.asarray(out['change_curve'], np.float64)
  columns.update({f'change@{j}': curve[:, j] for j in range(curve.shape[1])})
  return pd.DataFrame(columns)[valid].reset_index(drop=True)


def fill_check(model, dataset, *, fills: Sequence[str] = faithfulness.FILLS, fill_from=None,
               grid: int = 8, n_steps: int = 16, batch_size: int = 64, mesh=None, seed: int = 0,
               n_resamples: int = 2000, progress: bool = False) -> FillCheck:
  """How each fill of ``fills`` (``faithfulness.FILLS``) moves the probability of the positive
  finding when pixels of the healthy (label 0) images of ``dataset`` are deleted in a random
  order: a uniform ``grid`` x ``grid`` lattice upsampled like a CAM (``cams.postprocess``), so
  the removed pixels form blobs, as under a heat map. ``fill_from``: the data set whose healthy
  images are the references of 'reference' and 'texture' (``faithfulness.nearest_reference``;
  e.g. the validation split). ``model``: an ``nnx.Module`` or a checkpoint directory. The orders
  follow ``seed`` and the image's place among the healthy images, the same for every fill."""
  model, _ = checkpoint.model_and_recipe(model)
  fills = tuple(fills)
  for fill in fills:
    if fill not in faithfulness.FILLS:
      raise BadInput(f'unknown fill {fill!r}; choose from: {", ".join(faithfulness.FILLS)}')
  if not fills:
    raise BadInput(f'fills is empty; choose from: {", ".join(faithfulness.FILLS)}')
  if any(f in faithfulness.NEEDS_REFERENCE for f in fills) != (fill_from is not None):
    raise BadInput(f'fill_from is needed by the fills '
                   f'{" and ".join(map(repr, faithfulness.NEEDS_REFERENCE))}, and only by them')
  if grid < 1:
    raise BadInput(f'grid must be >= 1, got {grid}')
  healthy = driver.negatives(dataset)
  if not healthy:
    raise BadInput(f'the data set has no healthy (label 0) image among its {len(dataset)}')
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  graphdef, state = nnx.split(model)
  pool = driver.reference_pool(fill_from, model.normalisation) if fill_from is not None else None
  replicated = mesh_lib.replicate({'model': state, 'pool': pool}, mesh)
  keys_of = driver.image_keys(seed, mesh)

  def step(fill, replicated, images, keys):
    def predict(x):
      return nnx.merge(graphdef, replicated['model'])(x, train=False)

    raw = jax.vmap(lambda k: jax.random.uniform(k, (grid, grid)))(keys)
    heat, _ = cams.postprocess(raw, images.shape[1:3])
    reference = (faithfulness.nearest_reference(images, replicated['pool'])
                 if fill in faithfulness.NEEDS_REFERENCE else None)
    out = faithfulness.fill_cue(predict, images, heat, fill=fill, reference=reference,
                                n_steps=n_steps)
    out['prob'] = faithfulness.target_probability(predict(images),
                                                  jnp.ones(images.shape[:1], jnp.int32))
    return out

  frames = []
  for fill in fills:
    fn = mesh_lib.jit_on_mesh(functools.partial(step, fill), mesh, replicated_args=1,
                              sharded_args=2)
    frames.append(driver.stream_frames(
        driver.as_batches(healthy, batch_size, model.normalisation),
        lambda i, images, masks, fn=fn: fn(replicated, images, keys_of(i, images.shape[0])),
        mesh, progress=progress, desc=f'fill check {fill}',
        to_frame=functools.partial(_frame, fill=fill)))
  records = pd.concat(frames, ignore_index=True)
  return FillCheck(records, _summary(records, n_resamples, seed))
