"""Pretrained weights: torchvision VGG/ResNet and timm ViT state dicts, big_vision ViT ``.npz``.

cam_jax models mirror the source module names (see vgg.py, resnet.py, vit.py), so a torch name
maps to a cam_jax path by its leaf alone: ``weight`` -> ``kernel`` (conv (out,in,kh,kw) ->
(kh,kw,in,out), linear (out,in) -> (in,out)) or ``scale`` (1-D norm weight), ``running_mean`` /
``running_var`` -> BatchNorm ``mean`` / ``var``. Every load is all-or-nothing: any mismatch raises
one ValueError listing every missing, unexpected and wrongly shaped key. Three adaptations are
applied on purpose: a head with another class count keeps the model's fresh head; a 3-channel
input conv loaded into a 1-channel model is summed over colour; a ViT position grid of another
size is resized bilinearly (half-pixel centres, no antialiasing: torch's ``F.interpolate(...,
'bilinear', align_corners=False)``; timm resamples bicubically, big_vision with linear zoom).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cam_jax.core.errors import BadInput
from cam_jax.models import resnet, vgg, vit

_HEADS = {vgg.VGG: 'classifier.6', resnet.ResNet: 'fc', vit.ViT: 'head'}
_TORCH_LEAVES = {'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}
# big_vision / AugReg npz names of one encoder block (vision_transformer's pre-linen numbering)
# -> the timm-named cam_jax block.
_BV_BLOCK = {'LayerNorm_0': 'norm1', 'LayerNorm_2': 'norm2', 'MlpBlock_3/Dense_0': 'mlp.fc1',
             'MlpBlock_3/Dense_1': 'mlp.fc2'}
_BV_ATTN = 'MultiHeadDotProductAttention_1'
_BV_TOP = {'embedding': 'patch_embed.proj', 'head': 'head', 'Transformer/encoder_norm': 'norm'}


class Loaded(NamedTuple):
  model: nnx.Module
  skipped: list[str]  # source keys deliberately not loaded (a head with another class count)


def load_state_dict(model: nnx.Module, state_dict: dict[str, Any], *,
                    strict_head: bool = False) -> Loaded:
  """Loads a torchvision VGG/ResNet or timm ViT state dict into ``model`` in place.

  With ``strict_head`` a head of another class count is an error instead of being skipped.
  """
  arrays = {k: np.asarray(v.detach().cpu()) if hasattr(v, 'detach') else np.asarray(v)
            for k, v in state_dict.items()}
  return _assign(model, _from_torch(model, arrays), strict_head)


def load_file(model: nnx.Module, path: str | os.PathLike, *, strict_head: bool = False) -> Loaded:
  """Loads ``.pth``/``.pt`` (torch.save), ``.safetensors`` or big_vision ViT ``.npz`` weights."""
  suffix = os.path.splitext(os.fspath(path))[1].lower()
  if suffix in ('.pth', '.pt'):
    import torch  # pylint: disable=g-import-not-at-top
    obj = torch.load(path, map_location='cpu', weights_only=True)
    for key in ('state_dict', 'model'):
      if isinstance(obj.get(key), dict):
        obj = obj[key]
    return load_state_dict(model, obj, strict_head=strict_head)
  if suffix == '.safetensors':
    from safetensors import numpy as st  # pylint: disable=g-import-not-at-top
    return load_state_dict(model, st.load_file(os.fspath(path)), strict_head=strict_head)
  if suffix == '.npz':
    with np.load(path) as npz:
      return _assign(model, _from_big_vision(dict(npz)), strict_head)
  raise BadInput(f'{path}: unknown weights format {suffix!r}; '
                 'use .pth, .pt, .safetensors or .npz')


def save_npz(model: vit.ViT, path: str | os.PathLike) -> None:
  """Writes a patch-embedding cam_jax ViT in the big_vision / AugReg ``.npz`` layout.

  ``pos_embedding`` keeps the class-token row, (1, 1 + g*g, D): the combined form big_vision's
  ``fix_old_checkpoints`` accepts, and an exact round trip through ``load_file``.
  """
  if not isinstance(model, vit.ViT) or not isinstance(model.patch_embed, vit.PatchEmbed):
    raise BadInput(f'save_npz writes ViTs with a patch embedding, not {type(model).__name__}')
  p = {k: np.asarray(v) for k, (_, v) in _flat(nnx.to_pure_dict(_weights(model))).items()}
  heads = model.blocks[0].attn.heads
  d = p['cls_token'].shape[-1]
  out = {'embedding/kernel': p['patch_embed.proj.kernel'],
         'embedding/bias': p['patch_embed.proj.bias'], 'cls': p['cls_token'],
         'pos_embedding': p['pos_embed'], 'head/kernel': p['head.kernel'],
         'head/bias': p['head.bias'], 'Transformer/encoder_norm/scale': p['norm.scale'],
         'Transformer/encoder_norm/bias': p['norm.bias']}
  for i in range(len(model.blocks)):
    bv, cj = f'Transformer/encoderblock_{i}/', f'blocks.{i}.'
    for bv_name, cj_name in _BV_BLOCK.items():
      for leaf in ('scale', 'bias') if 'Norm' in bv_name else ('kernel', 'bias'):
        out[f'{bv}{bv_name}/{leaf}'] = p[f'{cj}{cj_name}.{leaf}']
    qkv_w = p[f'{cj}attn.qkv.kernel'].reshape(d, 3, heads, d // heads)
    qkv_b = p[f'{cj}attn.qkv.bias'].reshape(3, heads, d // heads)
    for j, name in enumerate(('query', 'key', 'value')):
      out[f'{bv}{_BV_ATTN}/{name}/kernel'] = qkv_w[:, j]
      out[f'{bv}{_BV_ATTN}/{name}/bias'] = qkv_b[j]
    out[f'{bv}{_BV_ATTN}/out/kernel'] = p[f'{cj}attn.proj.kernel'].reshape(heads, d // heads, d)
    out[f'{bv}{_BV_ATTN}/out/bias'] = p[f'{cj}attn.proj.bias']
  np.savez(path, **out)


def _from_torch(model, arrays):
  """torch names -> {cam_jax path: (source name, array)}; torchvision VGG flattens (C,H,W)."""
  out = {}
  for name, a in arrays.items():
    module, _, leaf = name.rpartition('.')
    if leaf == 'num_batches_tracked':
      continue
    if leaf == 'weight':
      leaf, a = ('scale', a) if a.ndim == 1 else ('kernel', a.T if a.ndim == 2 else
                                                  a.transpose(2, 3, 1, 0))
    else:
      leaf = _TORCH_LEAVES.get(leaf, leaf)
    out[f'{module}.{leaf}' if module else leaf] = (name, a)
  first = out.get('classifier.0.kernel')
  if isinstance(model, vgg.VGG) and first is not None:
    out['classifier.0.kernel'] = (first[0], _chw_rows_to_hwc(first[1], model.pool_size))
  return out


def _chw_rows_to_hwc(kernel, pool):
  """Reorders the rows of a (C*pool*pool, out) kernel from torch's (C,H,W) to NHWC's (H,W,C)."""
  rows, cols = kernel.shape
  if rows % (pool * pool):
    return kernel  # the shape check reports it
  return kernel.reshape(-1, pool, pool, cols).transpose(1, 2, 0, 3).reshape(rows, cols)


def _from_big_vision(npz):
  """big_vision / AugReg ViT names -> {cam_jax path: (source name, array)} (see ``save_npz``).

  query/key/value (D, heads, hd) fuse into timm's qkv kernel (D, 3D) in q|k|v order; keys not
  recognised keep their own name, so ``_assign`` reports them as unexpected.
  """
  out, qkv = {}, {}
  for key, a in npz.items():
    parts = key.split('/')
    prefix, leaf = '/'.join(parts[:-1]), parts[-1]
    in_block = key.startswith('Transformer/encoderblock_')
    block = parts[1].removeprefix('encoderblock_') if in_block else None
    sub = '/'.join(parts[2:-1]) if in_block else None
    if key in ('pos_embedding', 'Transformer/posembed_input/pos_embedding'):
      # big_vision adds no position to the class token: give it a zero row.
      out['pos_embed'] = (key, a if _is_square(a.shape[1] - 1) else
                          np.pad(a, ((0, 0), (1, 0), (0, 0))))
    elif key == 'cls':
      out['cls_token'] = (key, a)
    elif prefix in ('embedding', 'head', 'Transformer/encoder_norm'):
      out[f'{_BV_TOP[prefix]}.{leaf}'] = (key, a)
    elif sub in _BV_BLOCK:
      out[f'blocks.{block}.{_BV_BLOCK[sub]}.{leaf}'] = (key, a)
    elif sub == f'{_BV_ATTN}/out':
      out[f'blocks.{block}.attn.proj.{leaf}'] = (key, a.reshape(-1, a.shape[-1]) if
                                                 leaf == 'kernel' else a)
    elif sub in (f'{_BV_ATTN}/query', f'{_BV_ATTN}/key', f'{_BV_ATTN}/value'):
      qkv.setdefault((block, leaf), {})[parts[-2]] = (key, a)
    else:
      out[key] = (key, a)
  for (block, leaf), parts in qkv.items():
    if len(parts) < 3:
      out.update({key: (key, a) for key, a in parts.values()})
      continue
    flat = [parts[n][1].reshape(parts[n][1].shape[0], -1) if leaf == 'kernel' else
            parts[n][1].reshape(-1) for n in ('query', 'key', 'value')]
    name = f'Transformer/encoderblock_{block}/{_BV_ATTN}/{{query,key,value}}/{leaf}'
    out[f'blocks.{block}.attn.qkv.{leaf}'] = (name, np.concatenate(flat, axis=-1))
  return out


def _is_square(n):
  return n >= 0 and int(round(n ** 0.5)) ** 2 == n


def _weights(model):
  return nnx.state(model, (nnx.Param, nnx.BatchStat))


def _flat(pure, prefix=()):
  """Nested pure dict -> {dotted path: (key tuple, leaf)}."""
  out = {}
  for k, v in pure.items():
    if isinstance(v, dict):
      out.update(_flat(v, (*prefix, k)))
    else:
      out['.'.join(map(str, (*prefix, k)))] = ((*prefix, k), v)
  return out


def _adapt(path, a, expected):
  """``a`` fitted to ``expected``: 3->1 channel fold, ViT position-grid resize; else unchanged."""
  if (a.ndim == 4 and a.shape[2] == 3 and expected[2] == 1
      and a.shape[:2] + a.shape[3:] == expected[:2] + expected[3:]):
    return a.sum(axis=2, keepdims=True)  # only an input conv has one input channel
  if (path == 'pos_embed' and a.shape != expected and a.shape[2] == expected[2]
      and _is_square(a.shape[1] - 1) and _is_square(expected[1] - 1)):
    return resize_pos_embed(a, int(round((expected[1] - 1) ** 0.5)))
  return a


def resize_pos_embed(pos_embed, grid: int) -> np.ndarray:
  """(1, 1 + G*G, D) -> (1, 1 + grid*grid, D): class row kept, the G x G patch grid resized
  bilinearly with half-pixel centres and no antialiasing (jax.image.resize 'linear')."""
  cls, patches = pos_embed[:, :1], pos_embed[0, 1:]
  g0 = int(round(patches.shape[0] ** 0.5))
  resized = jax.image.resize(jnp.asarray(patches.reshape(g0, g0, -1), jnp.float32),
                             (grid, grid, patches.shape[-1]), 'linear', antialias=False)
  return np.concatenate([cls, np.asarray(resized).reshape(1, grid * grid, -1)], axis=1)


def _assign(model, source, strict_head):
  """Writes ``source`` ({path: (source name, array)}) into ``model`` after checking every key."""
  state = _weights(model)
  pure = nnx.to_pure_dict(state)
  target = _flat(pure)
  head = _HEADS.get(type(model))
  skipped, missing, wrong = [], [], []
  for path in sorted(target):
    keys, leaf = target[path]
    if path not in source:
      missing.append(path)
      continue
    name, a = source.pop(path)
    a = _adapt(path, a, leaf.shape)
    if a.shape != leaf.shape:
      in_head = not strict_head and head and path.startswith(f'{head}.')
      if in_head and a.shape[:-1] == leaf.shape[:-1]:  # another class count: keep the fresh head
        skipped.append(name)
        continue
      wrong.append(f'{name} -> {path}: expected {tuple(leaf.shape)}, got {tuple(a.shape)}')
      continue
    node = pure
    for k in keys[:-1]:
      node = node[k]
    node[keys[-1]] = jnp.asarray(a, dtype=leaf.dtype)
  unexpected = sorted(name for name, _ in source.values())
  if missing or unexpected or wrong:
    raise BadInput(f'cannot load weights into {type(model).__name__}:\n'
                   f'  missing: {missing}\n  unexpected: {unexpected}\n  wrong shape: {wrong}')
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)
  return Loaded(model, skipped)
