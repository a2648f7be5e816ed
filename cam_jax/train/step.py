"""Train state, class-weighted losses and the sharded, donated train step."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.models.head import positive_probability
from cam_jax.train import sharding


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any        # nnx.State of nnx.Param
  rest: Any          # batch statistics, RNG counters
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class ClassWeights:
  """Per-class loss weights ``n / (K * n_c)`` ("balanced"), or all ones."""
  weights: tuple[float, ...]

  @classmethod
  def from_labels(cls, labels, num_classes: int, balanced: bool = True) -> 'ClassWeights':
    k = max(num_classes, 2)
    counts = [int((labels == c).sum()) for c in range(k)]
    if not balanced:
      return cls((1.0,) * k)
    if min(counts) == 0:
      raise BadInput(f'class weighting needs every class in the training labels; counts {counts}')
    n = sum(counts)
    return cls(tuple(n / (k * c) for c in counts))


def weighted_loss(logits: jax.Array, labels: jax.Array, class_weights: ClassWeights):
  """Class-weighted mean cross-entropy (binary for one logit, softmax otherwise)."""
  w = jnp.asarray(class_weights.weights)[labels]
  if logits.shape[-1] == 1:
    per = optax.sigmoid_binary_cross_entropy(logits[:, 0], labels.astype(jnp.float32))
  else:
    per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(w * per) / jnp.sum(w)


def init_state(model: nnx.Module, tx: optax.GradientTransformation, mesh,
               param_sharding: str = sharding.REPLICATE, min_size: int = sharding.MIN_FSDP_SIZE):
  """(graphdef, TrainState placed on ``mesh`` by the ``param_sharding`` rules, its shardings)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                     opt_state=tx.init(params))
  shardings = sharding.tree_shardings(state, mesh, param_sharding, min_size)
  return graphdef, jax.device_put(state, shardings), shardings


def make_train_step(graphdef, tx: optax.GradientTransformation, class_weights: ClassWeights,
                    mesh, state_shardings):
  """Jitted ``(state, batch) -> (state, {'loss'})``; the state is donated and keeps
  ``state_shardings``, the batch is split on ``data``."""

  def step(state: TrainState, batch):
    def loss_fn(params, rest):
      model = nnx.merge(graphdef, params, rest, copy=True)  # fresh Variables in this trace
      logits = model(batch['image'], train=True)
      _, _, rest = nnx.split(model, nnx.Param, ...)
      return weighted_loss(logits, batch['label'], class_weights), rest

    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(step=state.step + 1, params=params, rest=rest, opt_state=opt_state)
    return new, {'loss': loss}

  rep, dat = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  return jax.jit(step, in_shardings=(state_shardings, dat), out_shardings=(state_shardings, rep),
                 donate_argnums=0)


@functools.lru_cache(maxsize=32)
def make_predict(graphdef, mesh):
  """Jitted ``(params, rest, images) -> P(positive)`` in eval mode, sharded on ``data``; one
  function per (graph, mesh), so repeated evaluations reuse its compilation."""

  def predict(params, rest, images):
    return positive_probability(nnx.merge(graphdef, params, rest)(images, train=False))

  rep, dat = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  return jax.jit(predict, in_shardings=(rep, rep, dat), out_shardings=dat)
