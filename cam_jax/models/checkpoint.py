"""Orbax checkpoints of a model's weights, with the recipe to rebuild it (``model.json``)."""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp
from flax import nnx

from cam_jax import models
from cam_jax.core import processes
from cam_jax.core.errors import MissingInput
from cam_jax.models import normalisation as normalisation_lib

_RECIPE, _ABOUT = 'model.json', 'about.json'


def recipe(name: str, num_classes: int, image_size: int, seed: int, in_channels: int = 1,
           normalisation=None) -> dict:
  """The ``models.create`` arguments a checkpoint stores to rebuild its model.

  ``normalisation``: the input statistics (``models.normalisation.of``'s forms), stored as
  ``{'mean': [...], 'std': [...]}``; None leaves it to training (``train.normalisation``,
  see ``cam_jax.train.loop.train``).
  """
  models.check_name(name)
  out = {'name': name, 'num_classes': num_classes, 'in_channels': in_channels,
         'image_size': image_size, 'seed': seed}
  if normalisation is not None:
    out['normalisation'] = normalisation_lib.of(normalisation, in_channels,
                                                'recipe normalisation').to_json()
  return out


def save(directory: str, recipe: dict, model: nnx.Module, about: dict | None = None) -> None:
  """Writes ``recipe`` (the ``models.create`` arguments), the model's params and batch stats,
  and ``about`` (where the weights come from: which step, selected how) when given. Every
  process calls it; process 0 writes the JSON files."""
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  _, params, stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  tree = {'params': nnx.to_pure_dict(params), 'batch_stats': nnx.to_pure_dict(stats)}
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(directory, 'weights'), tree, force=True)
  if processes.is_primary():
    for name, content in ((_RECIPE, recipe), (_ABOUT, about)):
      if content is not None:
        with open(os.path.join(directory, name), 'w') as f:
          json.dump(content, f, indent=1, sort_keys=True)


def exists(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, _RECIPE)) and os.path.isdir(
      os.path.join(directory, 'weights'))


def provenance(directory: str) -> dict:
  """Where a checkpoint's weights come from (``save``'s ``about``); {} when not recorded."""
  path = os.path.join(directory, _ABOUT)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def load(directory: str, log=print, dtype: str = 'float32') -> tuple[nnx.Module, dict]:
  """(model with the saved weights, its recipe), computing in ``dtype`` (``models.COMPUTE_DTYPES``:
  'bfloat16' runs activations and their gradients in bfloat16; the weights stay float32).

  A recipe saved before it held ``normalisation`` gets the constants every such checkpoint was
  trained with (``models.normalisation.legacy``), with a one-line note to ``log``.
  """
  directory = os.path.abspath(directory)
  if not exists(directory):
    raise MissingInput(f'no cam_jax checkpoint in {directory} (expected {_RECIPE} and '
                       'weights/)')
  with open(os.path.join(directory, _RECIPE)) as f:
    recipe = json.load(f)
  if 'normalisation' not in recipe:
    legacy = normalisation_lib.legacy(recipe.get('in_channels', 1))
    log(f'note: {directory} has no normalisation in {_RECIPE}: using the former constants '
        f'mean {legacy.mean[0]}, std {legacy.std[0]} it was trained with')
    recipe = {**recipe, 'normalisation': legacy.to_json()}
  model = models.create(**recipe, dtype=models.compute_dtype(dtype))
  graphdef, params, stats, other = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  target = {'params': nnx.to_pure_dict(params), 'batch_stats': nnx.to_pure_dict(stats)}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.restore(os.path.join(directory, 'weights'), abstract)
  nnx.replace_by_pure_dict(params, tree['params'])
  nnx.replace_by_pure_dict(stats, tree['batch_stats'])
  return nnx.merge(graphdef, params, stats, other), recipe


def model_and_recipe(model: nnx.Module | str, recipe: dict | None = None
                     ) -> tuple[nnx.Module, dict | None]:
  """``(model, recipe)`` of a checkpoint directory, or of a model given with its recipe."""
  return load(model) if isinstance(model, str) else (model, recipe)
