"""The shared CAM machinery: activations, gradients and probe passes at named layers, on device.

A method (see ``Method``) maps one image's layer output, laid out as a grid ``(h, w, C)``, to a
weighted activation ``(h, w, C)``; the CAM is its channel sum or, with ``eigen_smooth``, its first
principal component (pytorch-grad-cam's convention). ``make_cam_fn`` turns a method into one
jitted function of a whole batch, the method ``jax.vmap`` over images. Gradients are taken only
with respect to a zero perturbation added at each layer (see ``cam_jax.models.Taps``): no
parameter gradients. Perturbation methods run their extra forward passes in chunks of
channels, so memory is bounded by ``chunk`` forward passes per image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cam_jax import models

PREDICTED = 0
"""Target value meaning "explain the predicted sign" for one-logit heads (0 is not a sign)."""

GRADIENT, ACTIVATION = 'gradient', 'activation'
PERTURBATION, ATTENTION = 'perturbation', 'attention'


@dataclasses.dataclass(frozen=True)
class Method:
  """A CAM method.

  ``kind`` says what ``fn`` takes: GRADIENT ``fn(act, grad)``, ACTIVATION ``fn(act)``,
  PERTURBATION ``fn(probe, layer, native, act)`` (a ``Probe`` scores modified inputs or
  activations; ``native`` is the layer output in the model's own layout, without batch axis),
  ATTENTION ``fn(attentions)`` over every block's attention weights (the layers are then the
  model's ``attention_layers``), returning a score per token.
  ``fn`` returns the weighted activation (h, w, C), or a map (h, w) when ``reduces`` is True.
  ``via_logit``: the map weighs the layer by how it reaches the logit (gradients, ablation), so
  a layer the logit does not read (``model.logit_blind_layers``: (layer, why) pairs) gives
  empty maps.
  """
  fn: Callable
  kind: str = GRADIENT
  reduces: bool = False
  via_logit: bool = True


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


def predicted_target(num_classes: int) -> int:
  """The target meaning "the predicted finding" of a head with ``num_classes`` logits
  (``target_score``'s conventions)."""
  return PREDICTED if num_classes == 1 else -1


def describe_target(target: int, num_classes: int) -> str:
  """What ``target`` explains, in words (``target_score``'s conventions)."""
  if num_classes == 1:
    if target == PREDICTED:
      return 'the predicted finding'
    return 'the positive finding' if target > 0 else 'the negative finding'
  return 'the predicted class' if target < 0 else f'class {int(target)}'


def projection_2d(weighted: jax.Array) -> jax.Array:
  """First principal component of the (h*w, C) centred activations, as an (h, w) map
  (Muhammad & Yeasin, "Eigen-CAM", IJCNN 2020; pytorch-grad-cam's ``get_2d_projection``)."""
  h, w, c = weighted.shape
  flat = weighted.reshape(h * w, c)
  flat = flat - jnp.mean(flat, axis=0)
  _, _, vt = jnp.linalg.svd(flat, full_matrices=False)
  return (flat @ vt[0]).reshape(h, w)


@dataclasses.dataclass
class Probe:
  """Extra forward passes for one image: scores of modified inputs or layer activations."""
  model: nnx.Module
  image: jax.Array      # (1, H, W, C)
  target: jax.Array     # ()
  logits: jax.Array     # (K,) of the unmodified image
  chunk: int

  def _scores(self, logits):
    return jax.vmap(lambda l: target_score(l, self.target))(logits)

  def score_inputs(self, make_input: Callable[[jax.Array], jax.Array], n: int) -> jax.Array:
    """Scores of ``make_input(k)`` (an image like ``self.image[0]``) for k < n, in chunks."""
    return self._chunked(lambda ks: self._scores(self.model(jax.vmap(make_input)(ks))), n)

  def score_activations(self, layer: str, act: jax.Array,
                        make_act: Callable[[jax.Array], jax.Array], n: int) -> jax.Array:
    """Scores with ``layer``'s activation ``act`` replaced by ``make_act(k)`` (same layout)."""

    def run(ks):
      deltas = jax.vmap(make_act)(ks) - act[None]
      images = jnp.broadcast_to(self.image, (ks.shape[0], *self.image.shape[1:]))
      return self._scores(self.model(images, taps=models.Taps(deltas={layer: deltas})))

    return self._chunked(run, n)

  def original_score(self) -> jax.Array:
    return target_score(self.logits, self.target)

  def _chunked(self, fn, n):
    groups = -(-n // self.chunk)
    ks = jnp.minimum(jnp.arange(groups * self.chunk), n - 1).reshape(groups, self.chunk)
    return jax.lax.map(fn, ks).reshape(-1)[:n]


def _activations(model, x, layers):
  taps = models.Taps(record=layers)
  model(x, taps=taps)
  return taps.acts


def _acts_grads_logits(model, images, targets, layers):
  """Activations, their gradients and the logits for a whole batch in one forward/backward.

  In eval mode images do not interact, so the gradient of the summed per-image target scores
  with respect to an image's activation is that image's own gradient.
  """
  shapes = jax.eval_shape(lambda: _activations(model, images, layers))

  def probe(deltas):
    taps = models.Taps(deltas=deltas)
    logits = model(images, train=False, taps=taps)
    return jnp.sum(jax.vmap(target_score)(logits, targets)), (taps.acts, logits)

  zeros = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}
  grads, (acts, logits) = jax.grad(probe, has_aux=True)(zeros)
  return acts, grads, logits


def make_cam_fn(graphdef, method: Method, layers: Sequence[str], to_grid: Callable, *,
                eigen_smooth: bool = False, chunk: int = 32):
  """Jitted ``(state, images (B,H,W,C), targets (B,)) -> (maps, logits (B,K))``; ``maps`` is a
  tuple with one raw (B, h, w) map per layer, each at that layer's resolution.

  The method runs ``jax.vmap`` over images. The forward and backward passes it reads run on the
  whole batch (see ``_acts_grads_logits``), except for perturbation methods, whose probe passes
  are per image.
  """
  layers = tuple(layers)

  def reduce(weighted):
    if method.reduces:
      return weighted
    return projection_2d(weighted) if eigen_smooth else jnp.sum(weighted, axis=-1)

  def grid(layer, a):
    return to_grid(layer, a).astype(jnp.float32)

  def perturbed(state, image, target):
    model = nnx.merge(graphdef, state)
    x = image[None]
    taps = models.Taps(record=layers)
    logits = model(x, taps=taps)[0]
    probe = Probe(model, x, target, logits, chunk)
    return tuple(reduce(method.fn(probe, l, taps.acts[l][0], grid(l, taps.acts[l])[0]))
                 for l in layers), logits

  def batch(state, images, targets):
    if method.kind == PERTURBATION:
      return jax.vmap(perturbed, in_axes=(None, 0, 0))(state, images, targets)
    model = nnx.merge(graphdef, state)
    if method.kind == GRADIENT:
      acts, grads, logits = _acts_grads_logits(model, images, targets, layers)
      return tuple(jax.vmap(lambda a, g: reduce(method.fn(a, g)))(grid(l, acts[l]),
                                                                  grid(l, grads[l]))
                   for l in layers), logits
    taps = models.Taps(record=layers)
    logits = model(images, taps=taps)
    if method.kind == ATTENTION:
      tokens = jax.vmap(lambda *a: method.fn(list(a)))(*[taps.acts[l] for l in layers])
      return (to_grid(layers[-1], tokens[..., None])[..., 0],), logits
    return tuple(jax.vmap(lambda a: reduce(method.fn(a)))(grid(l, taps.acts[l]))
                 for l in layers), logits

  return jax.jit(batch)
