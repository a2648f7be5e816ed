"""Train state, losses and the sharded, donated train step."""

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

LOSSES = ('cross_entropy', 'focal')


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any        # nnx.State of nnx.Param, float32 master weights
  rest: Any          # batch statistics
  opt_state: Any
  ema: Any           # moving average of params, or None


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


@dataclasses.dataclass(frozen=True)
class Loss:
  """Class-weighted mean cross-entropy, or focal loss ``-(1 - p_t)^gamma log p_t`` (Lin et al.,
  ICCV 2017) with the class weights as its alpha; binary for one logit, softmax otherwise."""
  class_weights: ClassWeights
  kind: str = 'cross_entropy'
  gamma: float = 2.0

  def __post_init__(self):
    if self.kind not in LOSSES:
      raise BadInput(f'unknown loss {self.kind!r}; choose one of: {", ".join(LOSSES)}')

  def __call__(self, logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum of weighted per-image losses, sum of weights): their ratio is the mean."""
    logits = logits.astype(jnp.float32)
    w = jnp.asarray(self.class_weights.weights)[labels]
    if logits.shape[-1] == 1:
      z = logits[:, 0]
      log_pt = jax.nn.log_sigmoid(jnp.where(labels == 1, z, -z))
    else:
      log_pt = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    per = -log_pt
    if self.kind == 'focal':
      per = per * (1.0 - jnp.exp(log_pt)) ** self.gamma
    return jnp.sum(w * per), jnp.sum(w)


def init_state(model: nnx.Module, tx: optax.GradientTransformation, mesh,
               param_sharding: str = sharding.REPLICATE, min_size: int = sharding.MIN_FSDP_SIZE,
               ema: bool = False):
  """(graphdef, TrainState placed on ``mesh`` by the ``param_sharding`` rules, its shardings).

  The optimiser state and EMA are created on the devices, already sharded: ``jax.eval_shape``
  gives their shapes, the rules their shardings, and one jit with ``out_shardings`` fills them.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def create(params, rest):
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                      opt_state=tx.init(params), ema=params if ema else None)

  abstract = jax.eval_shape(create, params, rest)
  shardings = sharding.tree_shardings(abstract, mesh, param_sharding, min_size)
  state = jax.jit(create, out_shardings=shardings)(params, rest)
  return graphdef, state, shardings


def make_train_step(graphdef, tx: optax.GradientTransformation, loss: Loss,
                    mesh, state_shardings, *, accum_steps: int = 1, ema_decay: float = 0.0):
  """Jitted ``(state, batch) -> (state, metrics)``; the state is donated and keeps
  ``state_shardings``, the batch is split on ``data``. Metrics stay on the devices: ``loss``,
  ``grad_norm`` and ``finite`` (loss and gradient norm finite: the loop checks it before it
  saves, so a non-finite step never reaches a checkpoint).

  ``accum_steps`` > 1 splits the batch into that many micro-batches, run one after another
  (batch statistics updated by each in turn), and applies the mean gradient once.
  """
  def grads_of(params, rest, batch):
    def loss_fn(params, rest):
      model = nnx.merge(graphdef, params, rest, copy=True)  # fresh Variables in this trace
      total, weight = loss(model(batch['image'], train=True), batch['label'])
      _, _, rest = nnx.split(model, nnx.Param, ...)
      return total, (weight, rest)

    (total, (weight, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
    return total, weight, rest, grads

  def step(state: TrainState, batch):
    if accum_steps == 1:
      total, weight, rest, grads = grads_of(state.params, state.rest, batch)
    else:
      micro = jax.tree.map(lambda x: x.reshape(accum_steps, -1, *x.shape[1:]), batch)

      def body(carry, mb):
        total, weight, rest, grads = carry
        t, w, rest, g = grads_of(state.params, rest, mb)
        return (total + t, weight + w, rest, jax.tree.map(jnp.add, grads, g)), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (total, weight, rest, grads), _ = jax.lax.scan(
          body, (jnp.float32(0), jnp.float32(0), state.rest, zeros), micro)
    grads = jax.tree.map(lambda g: g / weight, grads)
    value = total / weight
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema is not None:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    new = TrainState(step=state.step + 1, params=params, rest=rest, opt_state=opt_state, ema=ema)
    return new, {'loss': value, 'grad_norm': grad_norm, 'finite': finite}

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
