"""Vision Transformer (Dosovitskiy et al., ICLR 2021), laid out like timm's ``VisionTransformer``.

Pre-norm blocks (``norm1 -> attn -> +``, ``norm2 -> mlp -> +``), a class token, learned position
embeddings, LayerNorm eps 1e-6 and exact (erf) GELU as in timm. The CAM layer of the literature
is ``blocks.<last>.norm1``; its patch tokens are reshaped to the patch grid without the class token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from cam_jax.core.errors import BadInput
from cam_jax.models import layers
from cam_jax.models.taps import NO_TAPS, Taps


class Attention(nnx.Module):

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs, dtype=None):
    self.heads = heads
    self.qkv = nnx.Linear(dim, 3 * dim, dtype=dtype, rngs=rngs)
    self.proj = nnx.Linear(dim, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, name: str = 'attn', taps: Taps = NO_TAPS):
    b, n, d = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / jnp.sqrt(d // self.heads).astype(x.dtype)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x.dtype)
    weights = taps(name, weights)  # (B, heads, N, N): what attention rollout reads
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(b, n, d)
    return self.proj(out)


class Mlp(nnx.Module):

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs, dtype=None):
    self.fc1 = nnx.Linear(dim, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):

  def __init__(self, dim: int, heads: int, mlp_ratio: float, *, rngs: nnx.Rngs, dtype=None):
    self.norm1 = nnx.LayerNorm(dim, epsilon=1e-6, dtype=dtype, rngs=rngs)
    self.attn = Attention(dim, heads, rngs=rngs, dtype=dtype)
    self.norm2 = nnx.LayerNorm(dim, epsilon=1e-6, dtype=dtype, rngs=rngs)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), rngs=rngs, dtype=dtype)

  def __call__(self, x, name: str, taps: Taps):
    x = x + self.attn(taps(f'{name}.norm1', self.norm1(x)), f'{name}.attn', taps)
    return x + self.mlp(self.norm2(x))


class PatchEmbed(nnx.Module):

  def __init__(self, in_channels: int, dim: int, patch: int, *, rngs: nnx.Rngs, dtype=None):
    self.proj = nnx.Conv(in_channels, dim, (patch, patch), strides=(patch, patch),
                         padding='VALID', dtype=dtype, rngs=rngs)

  def __call__(self, x, train: bool = False):
    del train  # no batch statistics
    x = self.proj(x)
    return x.reshape(x.shape[0], -1, x.shape[-1])


class ConvStem(nnx.Module):
  """Patch embedding by stride-2 3x3 convs, BatchNorm and ReLU, then a 1x1 projection
  (Xiao et al., "Early convolutions help transformers see better", NeurIPS 2021)."""

  def __init__(self, in_channels: int, dim: int, patch: int, widths, *, rngs: nnx.Rngs,
               dtype=None):
    if 2 ** len(widths) != patch:
      raise BadInput(f'ConvStem: {len(widths)} stride-2 convs give patch {2 ** len(widths)}, '
                     f'not {patch}')
    chans = (in_channels, *widths)
    self.convs = nnx.List([layers.conv(a, b, 3, 2, bias=False, rngs=rngs, dtype=dtype)
                           for a, b in zip(chans[:-1], chans[1:])])
    self.norms = nnx.List([layers.batch_norm(b, rngs=rngs, dtype=dtype) for b in widths])
    self.proj = nnx.Conv(widths[-1], dim, (1, 1), dtype=dtype, rngs=rngs)

  def __call__(self, x, train: bool = False):
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.relu(norm(conv(x), use_running_average=not train))
    x = self.proj(x)
    return x.reshape(x.shape[0], -1, x.shape[-1])


class ViT(nnx.Module):
  """ViT with class-token pooling and a linear ``head``; ``conv_stem`` widths select ConvStem."""

  def __init__(self, *, image_size: int, patch: int, dim: int, depth: int, heads: int,
               num_classes: int, in_channels: int, rngs: nnx.Rngs, mlp_ratio: float = 4.0,
               conv_stem: tuple[int, ...] = (), dtype=None):
    if image_size % patch:
      raise BadInput(f'ViT: image_size {image_size} is not a multiple of the patch size {patch}')
    self.grid = image_size // patch
    self.patch_embed = (ConvStem(in_channels, dim, patch, conv_stem, rngs=rngs, dtype=dtype)
                        if conv_stem else PatchEmbed(in_channels, dim, patch, rngs=rngs,
                                                     dtype=dtype))
    init = nnx.initializers.truncated_normal(0.02)
    self.cls_token = nnx.Param(init(rngs.params(), (1, 1, dim)))
    self.pos_embed = nnx.Param(init(rngs.params(), (1, self.grid * self.grid + 1, dim)))
    self.blocks = nnx.List([Block(dim, heads, mlp_ratio, rngs=rngs, dtype=dtype)
                            for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, epsilon=1e-6, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(dim, num_classes, dtype=dtype, rngs=rngs)
    self.cam_layers = tuple(f'blocks.{i}{s}' for i in range(depth) for s in ('.norm1', ''))
    self.default_cam_layer = f'blocks.{depth - 1}.norm1'
    # The last block's patch tokens reach only the final norm, which is per token, and the head
    # reads the class token alone: the logit does not depend on them at all.
    # (layer, why) pairs: a module's static attributes must hash (nnx's graphdef does).
    self.logit_blind_layers = ((f'blocks.{depth - 1}', 'the head reads only the class token, so '
                                "the patch tokens' gradient there is exactly 0 and ablating "
                                'them changes nothing'),)
    self.attention_layers = tuple(f'blocks.{i}.attn' for i in range(depth))
    # stem (convs + projection), qkv -> proj -> fc1 -> fc2 per block, head
    self.weight_layers = (len(conv_stem) + 1) + 4 * depth + 1

  def __call__(self, x, *, train: bool = False, taps: Taps = NO_TAPS):
    x = self.patch_embed(x, train)
    cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, x.shape[-1])).astype(x.dtype)
    x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...].astype(x.dtype)
    for i, blk in enumerate(self.blocks):
      x = taps(f'blocks.{i}', blk(x, f'blocks.{i}', taps))
    x = self.norm(x)
    return self.head(x[:, 0]).astype(jnp.float32)

  def to_grid(self, layer: str, act):
    """Patch tokens (..., 1 + g*g, D) -> (..., g, g, D), dropping the class token."""
    del layer
    tokens = act[..., 1:, :]
    return tokens.reshape(*tokens.shape[:-2], self.grid, self.grid, tokens.shape[-1])
