"""The optimiser of a training recipe: AdamW or SGD with momentum, linear warmup then cosine
decay, weight decay masked off biases, norm scales, position embeddings and tokens."""

from __future__ import annotations

import jax
import optax

from cam_jax.core.errors import BadInput

OPTIMIZERS = ('adamw', 'sgd')
_NO_DECAY = ('pos_embed', 'cls_token')


def schedule(train_config, total_steps: int) -> optax.Schedule:
  """Linear warmup over ``warmup_epochs`` then cosine decay to 1% (Loshchilov & Hutter, ICLR
  2017), as a function of the optimiser step."""
  total = max(1, total_steps)
  steps_per_epoch = total / max(1, train_config.epochs)
  warmup = min(total - 1, int(train_config.warmup_epochs * steps_per_epoch))
  lr = train_config.learning_rate
  return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end_value=0.01 * lr)


def decays(name: str, ndim: int) -> bool:
  """Whether weight decay applies to the parameter at path ``name`` with ``ndim`` axes: kernels
  and embeddings (two or more axes), not biases, norm scales, ViT position embeddings or class
  tokens (the convention of timm and of Dosovitskiy et al., ICLR 2021)."""
  return ndim >= 2 and not any(n in name for n in _NO_DECAY)


def decay_mask(params):
  """``decays`` of every leaf of ``params``, by its path."""
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: decays(jax.tree_util.keystr(path, simple=True, separator='/'),
                                leaf.ndim), params)


def optimizer(train_config, total_steps: int) -> optax.GradientTransformation:
  """AdamW (Loshchilov & Hutter, ICLR 2019), or SGD with momentum and L2 weight decay added to
  the gradient (as ``torch.optim.SGD`` does)."""
  name = train_config.optimizer
  lr = schedule(train_config, total_steps)
  wd = train_config.weight_decay
  if name == 'adamw':
    return optax.adamw(lr, weight_decay=wd, mask=decay_mask)
  if name == 'sgd':
    return optax.chain(optax.add_decayed_weights(wd, mask=decay_mask),
                       optax.sgd(lr, momentum=train_config.momentum))
  raise BadInput(f'unknown optimizer {name!r}; choose one of: {", ".join(OPTIMIZERS)}')
