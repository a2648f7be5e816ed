"""VGG (Simonyan & Zisserman, ICLR 2015), laid out like torchvision's ``VGG``.

``features`` is one list indexed as torchvision indexes ``model.features`` (conv, [bn], relu, ...,
maxpool), so tap names ``features.<i>`` and parameter paths line up with its state dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cam_jax.models import layers
from cam_jax.models.taps import NO_TAPS, Taps


class ReLU(nnx.Module):

  def __call__(self, x):
    return jax.nn.relu(x)


class MaxPool(nnx.Module):

  def __call__(self, x):
    return layers.max_pool(x, 2, 2)


class VGG(nnx.Module):
  """Conv stacks separated by 2x2 max pools, adaptive average pool, three-layer classifier."""

  def __init__(self, stages: Sequence[Sequence[int]], *, batch_norm: bool, num_classes: int,
               in_channels: int, rngs: nnx.Rngs, pool_size: int = 7, hidden: int = 4096,
               dropout: float = 0.5, dtype=None):
    feats, cin = [], in_channels
    for stage in stages:
      for cout in stage:
        feats.append(layers.conv(cin, cout, 3, bias=True, rngs=rngs, dtype=dtype))
        if batch_norm:
          feats.append(layers.batch_norm(cout, rngs=rngs, dtype=dtype))
        feats.append(ReLU())
        cin = cout
      feats.append(MaxPool())
    self.features = nnx.List(feats)
    self.pool_size = pool_size
    linear = lambda i, o: nnx.Linear(i, o, dtype=dtype, rngs=rngs)
    self.classifier = nnx.List([
        linear(cin * pool_size * pool_size, hidden), ReLU(), nnx.Dropout(dropout, rngs=rngs),
        linear(hidden, hidden), ReLU(), nnx.Dropout(dropout, rngs=rngs),
        linear(hidden, num_classes)])
    relus = [i for i, f in enumerate(feats) if isinstance(f, (ReLU, MaxPool))]
    self.cam_layers = tuple(f'features.{i}' for i in relus)
    last_relu = max(i for i, f in enumerate(feats) if isinstance(f, ReLU))
    self.default_cam_layer = f'features.{last_relu}'
    self.weight_layers = sum(len(stage) for stage in stages) + 3  # vgg16: 13 convs + 3 linear

  def __call__(self, x, *, train: bool = False, taps: Taps = NO_TAPS):
    for i, f in enumerate(self.features):
      x = f(x, use_running_average=not train) if isinstance(f, nnx.BatchNorm) else f(x)
      x = taps(f'features.{i}', x)
    x = layers.adaptive_avg_pool(x, (self.pool_size, self.pool_size))
    x = x.reshape(x.shape[0], -1)
    for f in self.classifier:
      x = f(x, deterministic=not train) if isinstance(f, nnx.Dropout) else f(x)
    return x.astype(jnp.float32)

  def to_grid(self, layer: str, act):
    del layer
    return act
