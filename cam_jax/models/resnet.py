"""ResNet (He et al., CVPR 2016), laid out like torchvision's ``ResNet`` (v1.5: stride on the
3x3)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cam_jax.models import layers
from cam_jax.models.taps import NO_TAPS, Taps


class BasicBlock(nnx.Module):
  expansion = 1
  weight_layers = 2  # convs on the main path

  def __init__(self, cin: int, width: int, stride: int, *, rngs: nnx.Rngs, dtype=None):
    self.conv1 = layers.conv(cin, width, 3, stride, bias=False, rngs=rngs, dtype=dtype)
    self.bn1 = layers.batch_norm(width, rngs=rngs, dtype=dtype)
    self.conv2 = layers.conv(width, width, 3, bias=False, rngs=rngs, dtype=dtype)
    self.bn2 = layers.batch_norm(width, rngs=rngs, dtype=dtype)
    self.downsample = _downsample(cin, width, stride, rngs=rngs, dtype=dtype)

  def __call__(self, x, train: bool):
    ura = not train
    y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
    y = self.bn2(self.conv2(y), use_running_average=ura)
    return jax.nn.relu(y + _shortcut(self.downsample, x, train))


class Bottleneck(nnx.Module):
  expansion = 4
  weight_layers = 3

  def __init__(self, cin: int, width: int, stride: int, *, rngs: nnx.Rngs, dtype=None):
    cout = width * self.expansion
    self.conv1 = layers.conv(cin, width, 1, bias=False, rngs=rngs, dtype=dtype)
    self.bn1 = layers.batch_norm(width, rngs=rngs, dtype=dtype)
    self.conv2 = layers.conv(width, width, 3, stride, bias=False, rngs=rngs, dtype=dtype)
    self.bn2 = layers.batch_norm(width, rngs=rngs, dtype=dtype)
    self.conv3 = layers.conv(width, cout, 1, bias=False, rngs=rngs, dtype=dtype)
    self.bn3 = layers.batch_norm(cout, rngs=rngs, dtype=dtype)
    self.downsample = _downsample(cin, cout, stride, rngs=rngs, dtype=dtype)

  def __call__(self, x, train: bool):
    ura = not train
    y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
    y = jax.nn.relu(self.bn2(self.conv2(y), use_running_average=ura))
    y = self.bn3(self.conv3(y), use_running_average=ura)
    return jax.nn.relu(y + _shortcut(self.downsample, x, train))


def _downsample(cin, cout, stride, *, rngs, dtype):
  if stride == 1 and cin == cout:
    return None
  return nnx.List([layers.conv(cin, cout, 1, stride, bias=False, rngs=rngs, dtype=dtype),
                   layers.batch_norm(cout, rngs=rngs, dtype=dtype)])


def _shortcut(downsample, x, train):
  if downsample is None:
    return x
  return downsample[1](downsample[0](x), use_running_average=not train)


class ResNet(nnx.Module):
  """Stem, four stages ``layer1..layer4`` of residual blocks, global average pool, ``fc``."""

  def __init__(self, block: type, depths: Sequence[int], *, num_classes: int, in_channels: int,
               rngs: nnx.Rngs, widths: Sequence[int] = (64, 128, 256, 512),
               strides: Sequence[int] = (1, 2, 2, 2), stem_kernel: int = 7, stem_stride: int = 2,
               stem_pool: bool = True, dtype=None):
    self.conv1 = layers.conv(in_channels, widths[0], stem_kernel, stem_stride, bias=False,
                             rngs=rngs, dtype=dtype)
    self.bn1 = layers.batch_norm(widths[0], rngs=rngs, dtype=dtype)
    self.stem_pool = stem_pool
    cin = widths[0]
    for k, (depth, width, stride) in enumerate(zip(depths, widths, strides), start=1):
      blocks = []
      for j in range(depth):
        blocks.append(block(cin, width, stride if j == 0 else 1, rngs=rngs, dtype=dtype))
        cin = width * block.expansion
      setattr(self, f'layer{k}', nnx.List(blocks))
    self.num_stages = len(depths)
    self.fc = nnx.Linear(cin, num_classes, dtype=dtype, rngs=rngs)
    self.cam_layers = tuple(f'layer{k}' for k in range(1, self.num_stages + 1))
    self.default_cam_layer = self.cam_layers[-1]
    self.weight_layers = 2 + block.weight_layers * sum(depths)  # resnet50: stem, 48 convs, fc

  def __call__(self, x, *, train: bool = False, taps: Taps = NO_TAPS):
    x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
    if self.stem_pool:
      x = layers.max_pool(x, 3, 2, padding=1)
    for k in range(1, self.num_stages + 1):
      for blk in getattr(self, f'layer{k}'):
        x = blk(x, train)
      x = taps(f'layer{k}', x)
    x = jnp.mean(x, axis=(1, 2))
    return self.fc(x).astype(jnp.float32)

  def to_grid(self, layer: str, act):
    del layer
    return act
