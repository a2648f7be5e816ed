"""The CAM family by name: ``cam_function`` builds one jitted, vmapped function per method and
layer set; ``postprocess`` turns its raw maps into heat maps on device; ``heat_function`` does
both in one jitted call, optionally with test-time augmentation (``aug_smooth``)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from cam_jax import models
from cam_jax.cams import eigencam, gradcam, perturbation, rollout
from cam_jax.cams.base import (
  ACTIVATION,
  ATTENTION,
  GRADIENT,
  PERTURBATION,
  PREDICTED,
  Method,
  describe_target,
  make_cam_fn,
  predicted_target,
  projection_2d,
  target_score,
)
from cam_jax.cams.postprocess import postprocess
from cam_jax.core.errors import BadInput

METHODS = {
    'gradcam': Method(gradcam.grad_cam),
    'hirescam': Method(gradcam.hires_cam),
    'gradcam_elementwise': Method(gradcam.grad_cam_elementwise),
    'xgradcam': Method(gradcam.xgrad_cam),
    'gradcam++': Method(gradcam.grad_cam_plus_plus),
    'layercam': Method(gradcam.layer_cam),
    'eigencam': Method(eigencam.eigen_cam, ACTIVATION, reduces=True, via_logit=False),
    'eigengradcam': Method(eigencam.eigen_grad_cam, reduces=True),
    'scorecam': Method(perturbation.score_cam, PERTURBATION, via_logit=False),
    'ablationcam': Method(perturbation.ablation_cam, PERTURBATION),
    'rollout': Method(rollout.attention_rollout, ATTENTION, reduces=True, via_logit=False),
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
    raise BadInput(f'unknown CAM method {method!r}; choose one of: {", ".join(sorted(METHODS))}')
  if METHODS[method].kind == ATTENTION:
    if not hasattr(model, 'attention_layers') or layer is not None:
      raise BadInput(f'{method!r} reads every attention layer of a ViT: give no layer '
                     f'(got {type(model).__name__}, layer {layer!r})')
    graphdef, state = nnx.split(model)
    fn = make_cam_fn(graphdef, METHODS[method], model.attention_layers, model.to_grid)
    return lambda st, images, targets: _first(fn(st, images, targets)), state, 'attention'
  single = layer is None or isinstance(layer, str)
  layers = [models.resolve_layer(model, l) for l in ([layer] if single else layer)]
  if not layers:
    raise BadInput('no CAM layer given; choose from: ' + ', '.join(model.cam_layers))
  blind = dict(getattr(model, 'logit_blind_layers', ()))
  for l in layers:
    if METHODS[method].via_logit and l in blind:
      raise BadInput(f'{method!r} cannot explain {type(model).__name__} layer {l!r}: {blind[l]}; '
                     f'its maps would all be empty. Choose an earlier layer (the default is '
                     f'{model.default_cam_layer!r}), or a method that does not go through the '
                     f'logit: eigencam, scorecam')
  graphdef, state = nnx.split(model)
  fn = make_cam_fn(graphdef, METHODS[method], layers, model.to_grid, eigen_smooth=eigen_smooth,
                   chunk=chunk)
  if single:
    return lambda st, images, targets: _first(fn(st, images, targets)), state, layers[0]
  return fn, state, tuple(layers)


TTA_FACTORS = (0.9, 1.0, 1.1)


def heat_function(model: nnx.Module, method: str = 'gradcam',
                  layer: str | Sequence[str] | None = None, *, aug_smooth: bool = False,
                  eigen_smooth: bool = False, chunk: int = 32):
  """(jitted ``fn(state, images, targets) -> (heat (B,H,W), flags (B,), logits)``, state, layer).

  ``aug_smooth`` averages the heat maps of the image, its horizontal flip, and both scaled by
  0.9, 1 and 1.1, each flipped back (pytorch-grad-cam's ``aug_smooth``, its ttach transforms);
  ``logits`` are those of the unaugmented images.
  """
  fn, state, layer = cam_function(model, method, layer, eigen_smooth=eigen_smooth, chunk=chunk)

  def heat(state, images, targets):
    hw = images.shape[1:3]
    raw, logits = fn(state, images, targets)
    maps, flags = postprocess(raw, hw)
    if not aug_smooth:
      return maps, flags, logits
    total = maps  # flip off, factor 1: the pass above
    for flip in (False, True):
      for factor in TTA_FACTORS:
        if not flip and factor == 1.0:
          continue
        x = (images[:, :, ::-1] if flip else images) * factor
        h, f = postprocess(fn(state, x, targets)[0], hw)
        total, flags = total + (h[:, :, ::-1] if flip else h), flags | f
    return total / (2 * len(TTA_FACTORS)), flags, logits

  return jax.jit(heat), state, layer


def _first(out):
  maps, logits = out
  return maps[0], logits


__all__ = ['ACTIVATION', 'ATTENTION', 'GRADIENT', 'METHODS', 'Method', 'PERTURBATION', 'PREDICTED',
           'TTA_FACTORS', 'cam_function', 'describe_target', 'heat_function', 'make_cam_fn',
           'postprocess', 'predicted_target', 'projection_2d', 'target_score']
