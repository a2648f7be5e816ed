"""Whole-data-set scoring: CAM, postprocess and every metric fused in one jitted pass per batch.

Only per-image numbers leave the device. ``score`` is the public entry point
(``cam_jax.score``); ``random_baseline`` scores random heat maps the same way, the floor a CAM
has to beat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx
from tqdm import tqdm

from cam_jax import cams, data
from cam_jax.scoring import localisation, summary as summary_lib
from cam_jax.scoring.summary import LOCALISATION_METRICS
from cam_jax.train import checkpoint, mesh as mesh_lib
from cam_jax.train.step import positive_probability


@dataclasses.dataclass
class ScoreResult:
  records: pd.DataFrame   # one row per image: id, label, prob, has_mask, metrics, flags
  summary: pd.DataFrame   # one row per metric: value with a bootstrap 95% CI


def _fused_metrics(heat, masks, flags):
  out = jax.vmap(localisation.localisation_metrics)(heat, masks)
  out['flags'] = out['flags'] | flags
  return out


def make_score_step(model: nnx.Module, method: str, layer: str | None, mesh, **cam_options):
  """(jitted ``step(state, images, masks, targets) -> per-image dict``, state, layer);
  ``cam_options`` go to ``cams.heat_function`` (aug_smooth, eigen_smooth, chunk)."""
  heat_fn, state, layer = cams.heat_function(model, method, layer, **cam_options)

  def step(state, images, masks, targets):
    heat, flags, logits = heat_fn(state, images, targets)
    return {**_fused_metrics(heat, masks, flags), 'prob': positive_probability(logits)}

  rep, dat = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  fn = jax.jit(step, in_shardings=(rep, dat, dat, dat), out_shardings=dat)
  return fn, jax.device_put(state, rep), layer


def _batches(dataset, batch_size: int) -> Iterable[dict]:
  if hasattr(dataset, '__getitem__') and hasattr(dataset, '__len__'):
    return data.eval_batches(dataset, batch_size=batch_size)
  return dataset


def _stream(batches: Iterable[dict], device_fn: Callable, mesh, progress: bool, desc: str):
  rows = []
  for i, batch in enumerate(tqdm(batches, desc=desc, disable=not progress, unit='batch')):
    sharded = mesh_lib.shard_batch({'image': batch['image'], 'mask': batch['mask']}, mesh)
    out = jax.device_get(device_fn(i, sharded['image'], sharded['mask']))
    valid = np.asarray(batch['valid'], bool)
    has_mask = np.asarray(batch['mask']).reshape(len(valid), -1).any(axis=1)
    frame = pd.DataFrame({'id': np.asarray(batch['id']).astype(str),
                          'label': np.asarray(batch['label']).astype(int),
                          'has_mask': has_mask})
    if 'prob' in out:
      frame['prob'] = np.asarray(out['prob'], np.float64)
    for m in LOCALISATION_METRICS:
      frame[m] = np.where(has_mask, np.asarray(out[m], np.float64), np.nan)
    frame['flags'] = [localisation.flag_names(int(f)) if h else ''
                      for f, h in zip(np.asarray(out['flags']), has_mask)]
    rows.append(frame[valid])
  return pd.concat(rows, ignore_index=True)


def score(model, dataset, *, method: str = 'gradcam', layer: str | None = None,
          target: int = 1, batch_size: int = 64, mesh=None, progress: bool = True,
          n_resamples: int = 2000, seed: int = 0, **cam_options) -> ScoreResult:
  """Scores ``method`` heat maps of ``model`` against the lesion masks of ``dataset``.

  ``model``: an ``nnx.Module`` with weights or a checkpoint directory. ``dataset``: a
  random-access source of records (``image`` uint8, ``mask``, ``label``, ``id``) or an iterable
  of batches shaped like ``cam_jax.data.eval_batches``. ``target``: the explained sign or class
  for every image (``cams.PREDICTED`` for the prediction). Images without a lesion get
  classification numbers only. ``cam_options``: ``aug_smooth``, ``eigen_smooth``, ``chunk``
  (see ``cams.heat_function``).
  """
  if isinstance(model, str):
    model, _ = checkpoint.load(model)
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  batches = _batches(dataset, batch_size)
  fn, state, _ = make_score_step(model, method, layer, mesh, **cam_options)

  def device_fn(i, images, masks):
    del i
    targets = jax.device_put(jnp.full((images.shape[0],), target, jnp.int32),
                             mesh_lib.data_sharded(mesh))
    return fn(state, images, masks, targets)

  records = _stream(batches, device_fn, mesh, progress, desc=f'score {method}')
  return ScoreResult(records, summary_lib.summarise(records, n_resamples=n_resamples, seed=seed))


def random_baseline(dataset, *, grid: int = 8, batch_size: int = 64, mesh=None,
                    progress: bool = True, n_resamples: int = 2000, seed: int = 0) -> ScoreResult:
  """Uniform random maps on a ``grid`` x ``grid`` lattice, postprocessed and scored like a CAM."""
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  key = jax.random.key(seed)

  @jax.jit
  def fn(key, masks):
    raw = jax.random.uniform(key, (masks.shape[0], grid, grid))
    heat, flags = cams.postprocess(raw, masks.shape[1:3])
    return _fused_metrics(heat, masks, flags)

  def device_fn(i, images, masks):
    del images
    return fn(jax.random.fold_in(key, i), masks)

  records = _stream(_batches(dataset, batch_size), device_fn, mesh, progress, desc='random')
  return ScoreResult(records, summary_lib.summarise(records, n_resamples=n_resamples, seed=seed))
