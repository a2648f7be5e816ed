"""Small building blocks shared by the model families (torch-compatible padding and pooling)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx


def conv(cin: int, cout: int, kernel: int, stride: int = 1, *, bias: bool, rngs: nnx.Rngs,
         dtype=None, padding: int | None = None) -> nnx.Conv:
  """A 2-D convolution with symmetric padding ``kernel // 2`` (torch's convention)."""
  pad = kernel // 2 if padding is None else padding
  return nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride),
                  padding=((pad, pad), (pad, pad)), use_bias=bias, dtype=dtype,
                  kernel_init=nnx.initializers.kaiming_normal(), rngs=rngs)


def batch_norm(features: int, *, rngs: nnx.Rngs, dtype=None) -> nnx.BatchNorm:
  """BatchNorm with torch's defaults: eps 1e-5, running-average momentum 0.1."""
  return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)


def max_pool(x, kernel: int, stride: int, padding: int = 0):
  pad = ((padding, padding), (padding, padding))
  return nnx.max_pool(x, (kernel, kernel), strides=(stride, stride), padding=pad)


def adaptive_avg_pool(x, out_hw: tuple[int, int]):
  """torch.nn.AdaptiveAvgPool2d for NHWC input: output cell i averages rows
  floor(i*H/o)..ceil((i+1)*H/o)."""
  h, w = x.shape[-3], x.shape[-2]
  oh, ow = out_hw
  if (h, w) == (oh, ow):
    return x
  rows = []
  for i in range(oh):
    r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
    cols = []
    for j in range(ow):
      c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
      cols.append(jnp.mean(x[..., r0:r1, c0:c1, :], axis=(-3, -2)))
    rows.append(jnp.stack(cols, axis=-2))
  return jnp.stack(rows, axis=-3)
