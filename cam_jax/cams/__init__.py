"""The CAM family by name: ``cam_function`` builds one jitted, vmapped function per method/layer."""

from __future__ import annotations

from flax import nnx

from cam_jax import models
from cam_jax.cams.base import PREDICTED, make_cam_fn, target_score
from cam_jax.cams.gradcam import grad_cam
from cam_jax.cams.postprocess import postprocess

METHODS = {'gradcam': grad_cam}


def cam_function(model: nnx.Module, method: str = 'gradcam', layer: str | None = None):
  """(jitted ``fn(state, images, targets) -> (raw maps, logits)``, graph state, resolved layer)."""
  if method not in METHODS:
    raise ValueError(f'unknown CAM method {method!r}; choose one of: {", ".join(sorted(METHODS))}')
  layer = models.resolve_layer(model, layer)
  graphdef, state = nnx.split(model)
  return make_cam_fn(graphdef, METHODS[method], layer, model.to_grid), state, layer


__all__ = ['METHODS', 'PREDICTED', 'cam_function', 'make_cam_fn', 'postprocess', 'target_score']
