"""Model-parameter randomisation tests (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018).

A heat map that explains the model must change when the model's weights are replaced by random
ones. ``model_randomisation`` re-initialises the model's parameter blocks
(``cam_jax.models.parameter_blocks``) from the logits down, either cumulatively (cascading) or
one at a time (independent), and compares each randomised model's heat maps with the original
model's by SSIM and Spearman rank correlation, image by image, on device.
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from cam_jax import cams, data, models
from cam_jax.core import flags as flags_lib, mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.metrics import similarity
from cam_jax.models import checkpoint

MODES = ('cascading', 'independent')
ORIGINAL = 'original'
"""The block name of step 0: no block randomised."""


def randomisation_steps(model: nnx.Module, mode: str = 'cascading'
                        ) -> list[tuple[str, tuple[str, ...]]]:
  """``(block, blocks randomised)`` per step: step 0 is the original model, step k names the
  k-th block from the logits down and randomises it and every block above it (cascading) or
  it alone (independent)."""
  if mode not in MODES:
    raise BadInput(f'unknown randomisation mode {mode!r}; choose one of: {", ".join(MODES)}')
  top_down = list(reversed(models.parameter_blocks(model)))
  return [(ORIGINAL, ())] + [
      (name, tuple(top_down[:k + 1]) if mode == 'cascading' else (name,))
      for k, name in enumerate(top_down)]


def _state_keys(path) -> str:
  return '.'.join(str(p.key) for p in path if isinstance(p, jax.tree_util.DictKey))


def _mix(state, fresh, prefixes: Sequence[str]):
  """``state`` with every variable under one of ``prefixes`` taken from ``fresh``."""

  def pick(path, old, new):
    keys = _state_keys(path)
    return new if any(keys == p or keys.startswith(p + '.') for p in prefixes) else old

  return jax.tree_util.tree_map_with_path(pick, state, fresh)


def _fresh_state(model: nnx.Module, recipe: dict, seed: int | None):
  """The state of ``models.create(**recipe)`` from ``seed`` (default: the recipe's seed + 1)."""
  seed = recipe.get('seed', 0) + 1 if seed is None else seed
  if seed == recipe.get('seed', 0):
    raise BadInput(f'seed {seed} is the seed the model was initialised from: its "random" '
                   'weights would be its own initial weights; choose another seed')
  _, fresh = nnx.split(models.create(**{**recipe, 'seed': seed}))
  _, state = nnx.split(model)
  shapes = lambda s: jax.tree.map(jnp.shape, s)
  if jax.tree.structure(fresh) != jax.tree.structure(state) or shapes(fresh) != shapes(state):
    raise BadInput(f'recipe {recipe} does not build a model shaped like the given '
                   f'{type(model).__name__}')
  return fresh


def _block_prefixes(model: nnx.Module, blocks: Sequence[str]) -> list[str]:
  owned = models.parameter_blocks(model)
  unknown = [b for b in blocks if b not in owned]
  if unknown:
    raise BadInput(f'unknown parameter block(s) {", ".join(map(repr, unknown))} of '
                   f'{type(model).__name__}; choose from: {", ".join(owned)}')
  return [p for b in blocks for p in owned[b]]


def randomised(model: nnx.Module, blocks: Sequence[str], seed: int, recipe: dict) -> nnx.Module:
  """A copy of ``model`` whose ``blocks`` (names from ``models.parameter_blocks``) hold the
  parameters and batch statistics of a fresh ``models.create(**recipe)`` from ``seed``.

  ``recipe``: the ``models.create`` arguments that built ``model`` (a checkpoint's
  ``model.json``, ``TrainResult.recipe``); a model does not carry them. ``model`` is unchanged.
  """
  prefixes = _block_prefixes(model, blocks)
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, _mix(state, _fresh_state(model, recipe, seed), prefixes))


def _head(dataset, n: int):
  if not (hasattr(dataset, '__getitem__') and hasattr(dataset, '__len__')):
    raise BadInput('model_randomisation takes a random-access source of records (len and [])')
  return grain.MapDataset.source(dataset)[:min(n, len(dataset))]


def model_randomisation(model, dataset, *, recipe: dict | None = None, method: str = 'gradcam',
                        layer: str | None = None, mode: str = 'cascading', n_images: int = 64,
                        batch_size: int = 32, target: int = 1, seed: int | None = None,
                        mesh=None) -> pd.DataFrame:
  """Heat maps of ``model`` beside those of its randomised copies, one row per step and image.

  ``model``: an ``nnx.Module`` with its ``recipe`` (see ``randomised``), or a checkpoint
  directory. ``dataset``: a random-access source of records; its first ``n_images`` (all when
  fewer) are explained for ``target`` (see ``cams.target_score``). ``seed``: the random
  weights' seed (default: the recipe's seed + 1). Columns: ``mode, step, block, id, ssim,
  spearman, flags``; step 0 (block ``original``) compares the model with itself, step k is
  described by ``randomisation_steps``; ``flags`` names the degenerate maps of either side
  (``core.flags.FLAG_NAMES``).
  """
  model, recipe = checkpoint.model_and_recipe(model, recipe)
  if recipe is None:
    raise BadInput('model_randomisation needs the recipe that built the model (its '
                   'models.create arguments) to draw initialiser-correct random weights')
  steps = randomisation_steps(model, mode)
  fresh = _fresh_state(model, recipe, seed)
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  heat_fn, state, _ = cams.heat_function(model, method, layer)
  reference = mesh_lib.jit_on_mesh(heat_fn, mesh, replicated_args=1, sharded_args=2)

  def compare(state, images, targets, ref_heat, ref_flags):
    heat, flags, _ = heat_fn(state, images, targets)
    return {'ssim': jax.vmap(similarity.ssim)(heat, ref_heat),
            'spearman': jax.vmap(similarity.spearman)(heat, ref_heat), 'flags': flags | ref_flags}

  compare = mesh_lib.jit_on_mesh(compare, mesh, replicated_args=1, sharded_args=4)
  state = mesh_lib.replicate(state, mesh)
  batches = []
  for batch in data.eval_batches(_head(dataset, n_images), batch_size=batch_size,
                                 normalisation=model.normalisation):
    images = mesh_lib.shard_batch({'image': batch['image']}, mesh)['image']
    targets = mesh_lib.same_targets(target, batch_size, mesh)
    heat, flags, _ = reference(state, images, targets)
    batches.append((images, targets, heat, flags, batch['id'], np.asarray(batch['valid'], bool)))
  frames = []
  for k, (block, blocks) in enumerate(steps):
    mixed = mesh_lib.replicate(_mix(state, fresh, _block_prefixes(model, blocks)), mesh)
    for images, targets, heat, flags, ids, valid in batches:
      out = jax.device_get(compare(mixed, images, targets, heat, flags))
      frames.append(pd.DataFrame({
          'mode': mode, 'step': k, 'block': block, 'id': np.asarray(ids).astype(str),
          'ssim': np.asarray(out['ssim'], np.float64),
          'spearman': np.asarray(out['spearman'], np.float64),
          'flags': [flags_lib.flag_names(int(f)) for f in out['flags']]})[valid])
  return pd.concat(frames, ignore_index=True)
