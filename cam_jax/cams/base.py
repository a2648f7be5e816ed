"""The shared CAM machinery: activation and its gradient at one layer, per image, on device.

A CAM method is a function ``(activation, gradient) -> map`` on one image's layer output laid
out as a grid ``(h, w, C)``. ``make_cam_fn`` turns one into a single jitted function of a whole
batch, ``jax.vmap`` over images, that differentiates only with respect to the layer's activation
(a zero perturbation added there, see ``cam_jax.models.Taps``): no parameter gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from cam_jax import models

CamMethod = Callable[[jax.Array, jax.Array], jax.Array]
PREDICTED = 0
"""Target value meaning "explain the predicted class / sign" (0 is not a valid sign)."""


def target_score(logits: jax.Array, target: jax.Array) -> jax.Array:
  """The scalar explained for one image's ``logits`` (K,).

  One-logit heads: ``target`` is a sign, +1 explains the positive finding, -1 the negative,
  0 the predicted one. Softmax heads: ``target`` is a class index, or -1 for the predicted class.
  """
  if logits.shape[-1] == 1:
    sign = jnp.where(target == PREDICTED, jnp.where(logits[0] >= 0, 1.0, -1.0), jnp.sign(target))
    return jax.lax.stop_gradient(sign) * logits[0]
  idx = jnp.where(target < 0, jnp.argmax(jax.lax.stop_gradient(logits)), target)
  return logits[idx]


def make_cam_fn(graphdef, method: CamMethod, layer: str, to_grid: Callable):
  """Jitted ``(state, images (B,H,W,C), targets (B,)) -> (raw maps (B,h,w), logits (B,K))``."""

  def one(state, image, target):
    model = nnx.merge(graphdef, state)
    x = image[None]

    def probe(delta):
      taps = models.Taps(deltas={layer: delta})
      logits = model(x, train=False, taps=taps)[0]
      return target_score(logits, target), (taps.acts[layer], logits)

    shape = jax.eval_shape(lambda: _activation(model, x, layer))
    grad, (act, logits) = jax.grad(probe, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
    act, grad = to_grid(layer, act)[0], to_grid(layer, grad)[0]
    return method(act.astype(jnp.float32), grad.astype(jnp.float32)), logits

  return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def _activation(model, x, layer):
  taps = models.Taps(record=[layer])
  model(x, train=False, taps=taps)
  return taps.acts[layer]
