"""The CAM family by name: ``cam_function`` builds one jitted, vmapped function per method and
layer set; ``postprocess`` turns its raw maps into heat maps on device."""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from cam_jax import models
from cam_jax.cams import eigencam, gradcam, perturbation
from cam_jax.cams.base import (ACTIVATION, GRADIENT, PERTURBATION, PREDICTED, Method,
                               make_cam_fn, projection_2d, target_score)
from cam_jax.cams.postprocess import postprocess

METHODS = {
    'gradcam': Method(gradcam.grad_cam),
    'hirescam': Method(gradcam.hires_cam),
    'gradcam_elementwise': Method(gradcam.grad_cam_elementwise),
    'xgradcam': Method(gradcam.xgrad_cam),
    'gradcam++': Method(gradcam.grad_cam_plus_plus),
    'layercam': Method(gradcam.layer_cam),
    'eigencam': Method(eigencam.eigen_cam, ACTIVATION, reduces=True),
    'scorecam': Method(perturbation.score_cam, PERTURBATION),
    'ablationcam': Method(perturbation.ablation_cam, PERTURBATION),
}


def cam_function(model: nnx.Module, method: str = 'gradcam',
                 layer: str | Sequence[str] | None = None, *, eigen_smooth: bool = False,
                 chunk: int = 32):
  """(jitted ``fn(state, images, targets) -> (raw maps, logits)``, graph state, layer(s)).

  ``layer``: one name (or None for the model's default), and ``fn`` returns one (B, h, w) array;
  or a sequence of names, and ``fn`` returns a tuple of arrays, one per layer, that
  ``postprocess`` aggregates as pytorch-grad-cam does. ``chunk`` bounds the extra forward passes
  per image that Score-CAM and Ablation-CAM run at once.
  """
  if method not in METHODS:
    raise ValueError(f'unknown CAM method {method!r}; choose one of: {", ".join(sorted(METHODS))}')
  single = layer is None or isinstance(layer, str)
  layers = [models.resolve_layer(model, l) for l in ([layer] if single else layer)]
  if not layers:
    raise ValueError('no CAM layer given; choose from: ' + ', '.join(model.cam_layers))
  graphdef, state = nnx.split(model)
  fn = make_cam_fn(graphdef, METHODS[method], layers, model.to_grid, eigen_smooth=eigen_smooth,
                   chunk=chunk)
  if single:
    def one_layer(state, images, targets):
      maps, logits = fn(state, images, targets)
      return maps[0], logits
    return one_layer, state, layers[0]
  return fn, state, tuple(layers)


__all__ = ['ACTIVATION', 'GRADIENT', 'METHODS', 'Method', 'PERTURBATION', 'PREDICTED',
           'cam_function', 'make_cam_fn', 'postprocess', 'projection_2d', 'target_score']
