"""Repeatability and reproducibility of heat maps (Arun et al., "Assessing the Trustworthiness
of Saliency Maps for Localizing Abnormalities in Medical Imaging", Radiology: Artificial
Intelligence 2021).

``map_agreement`` compares two models' heat maps of the same images by SSIM and Spearman rank
correlation: one architecture trained from two seeds measures repeatability, two architectures
measure reproducibility. Both heat functions and the similarities run in one jitted step per
batch; only per-image numbers leave the device.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from cam_jax import cams
from cam_jax.core import flags as flags_lib, mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.metrics import similarity
from cam_jax.models import checkpoint
from cam_jax.scoring import driver


def map_agreement(model_a, model_b, dataset, *, method: str = 'gradcam',
                  layer_a: str | None = None, layer_b: str | None = None, target: int = 1,
                  batch_size: int = 32, mesh=None, progress: bool = False) -> pd.DataFrame:
  """SSIM and Spearman correlation of ``model_a``'s and ``model_b``'s heat maps, per image.

  ``model_a``, ``model_b``: ``nnx.Module`` s or checkpoint directories. ``dataset``: a
  random-access source of records or an iterable of batches shaped like
  ``cam_jax.data.eval_batches``, normalised with ``model_a.normalisation`` (``model_b`` sees
  the same pixels under its own). ``target``: the explained sign or class (see
  ``cams.target_score``). Columns: ``id, has_mask, ssim, spearman, flags`` for every record,
  padding dropped; ``flags`` names the degenerate maps of either model
  (``core.flags.FLAG_NAMES``; a constant map has Spearman 0).
  """
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  model_a, model_b = (checkpoint.model_and_recipe(m)[0] for m in (model_a, model_b))
  heat_a, state_a, _ = cams.heat_function(model_a, method, layer_a)
  heat_b, state_b, _ = cams.heat_function(model_b, method, layer_b)
  norm_a, norm_b = model_a.normalisation, model_b.normalisation

  def step(state_a, state_b, images, targets):
    a, flags_a, _ = heat_a(state_a, images, targets)
    b, flags_b, _ = heat_b(state_b, images if norm_a == norm_b else norm_a.convert(images, norm_b),
                           targets)
    return {'ssim': jax.vmap(similarity.ssim)(a, b),
            'spearman': jax.vmap(similarity.spearman)(a, b), 'flags': flags_a | flags_b}

  step = mesh_lib.jit_on_mesh(step, mesh, replicated_args=2, sharded_args=2)
  state_a, state_b = mesh_lib.replicate((state_a, state_b), mesh)

  def device_fn(i, images, masks):
    del i, masks
    return step(state_a, state_b, images, mesh_lib.same_targets(target, images.shape[0], mesh))

  def to_frame(batch, out):
    valid = np.asarray(batch['valid'], bool)
    return pd.DataFrame({
        'id': np.asarray(batch['id']).astype(str),
        'has_mask': np.asarray(batch['mask']).reshape(len(valid), -1).any(axis=1),
        'ssim': np.asarray(out['ssim'], np.float64),
        'spearman': np.asarray(out['spearman'], np.float64),
        'flags': [flags_lib.flag_names(int(f)) for f in out['flags']]})[valid]

  return driver.stream_frames(driver.as_batches(dataset, batch_size, norm_a), device_fn, mesh,
                              progress=progress, desc=f'agreement {method}', to_frame=to_frame)


def heat_maps(model, dataset, *, method: str = 'gradcam', layer: str | None = None,
              target: int = 1, aug_smooth: bool = False, eigen_smooth: bool = False,
              batch_size: int = 32, mesh=None) -> dict[str, np.ndarray]:
  """``model``'s heat maps of every record of ``dataset`` (a random-access source or batches
  as ``map_agreement`` takes), kept on the host so that many pairs of models can be compared
  without recomputing them (``compare_maps``): ``{'id': (N,) str, 'heat': (N, H, W) float16,
  'flags': (N,) int}``."""
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  model = checkpoint.model_and_recipe(model)[0]
  fn, state, _ = cams.heat_function(model, method, layer, aug_smooth=aug_smooth,
                                    eigen_smooth=eigen_smooth)
  fn = mesh_lib.jit_on_mesh(fn, mesh, replicated_args=1, sharded_args=2)
  state = mesh_lib.replicate(state, mesh)
  ids, heats, flags = [], [], []
  for batch in driver.as_batches(dataset, batch_size, model.normalisation):
    images = mesh_lib.shard_batch({'image': batch['image']}, mesh)['image']
    heat, flag, _ = jax.device_get(fn(state, images,
                                      mesh_lib.same_targets(target, images.shape[0], mesh)))
    valid = np.asarray(batch['valid'], bool)
    ids.append(np.asarray(batch['id']).astype(str)[valid])
    heats.append(np.asarray(heat, np.float16)[valid])
    flags.append(np.asarray(flag)[valid])
  return {'id': np.concatenate(ids), 'heat': np.concatenate(heats),
          'flags': np.concatenate(flags)}


@jax.jit
def _similarities(a, b):
  a, b = a.astype(np.float32), b.astype(np.float32)
  return jax.vmap(similarity.ssim)(a, b), jax.vmap(similarity.spearman)(a, b)


def compare_maps(a: dict[str, np.ndarray], b: dict[str, np.ndarray],
                 chunk: int = 64) -> pd.DataFrame:
  """SSIM and Spearman of two ``heat_maps`` results over the same ids, per image: columns
  ``id, ssim, spearman, flags`` as ``map_agreement``'s (without ``has_mask``)."""
  if not np.array_equal(a['id'], b['id']):
    raise BadInput('compare_maps: the two sets of heat maps cover different images')
  parts = [jax.device_get(_similarities(a['heat'][i:i + chunk], b['heat'][i:i + chunk]))
           for i in range(0, len(a['id']), chunk)]
  return pd.DataFrame({
      'id': a['id'], 'ssim': np.concatenate([p[0] for p in parts]).astype(np.float64),
      'spearman': np.concatenate([p[1] for p in parts]).astype(np.float64),
      'flags': [flags_lib.flag_names(int(f)) for f in a['flags'] | b['flags']]})
