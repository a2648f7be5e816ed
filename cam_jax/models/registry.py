"""The model zoo by name: ``create``, ``names`` and the CAM layers of a model."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from cam_jax.core.errors import BadInput
from cam_jax.models import normalisation as normalisation_lib, resnet, vgg, vit

_BUILDERS: dict[str, Callable[..., nnx.Module]] = {}

VGG_STAGES = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
RESNETS = {18: (resnet.BasicBlock, (2, 2, 2, 2)), 34: (resnet.BasicBlock, (3, 4, 6, 3)),
            50: (resnet.Bottleneck, (3, 4, 6, 3)), 101: (resnet.Bottleneck, (3, 4, 23, 3)),
            152: (resnet.Bottleneck, (3, 8, 36, 3))}
VITS = {'vit_ti16': (16, 192, 12, 3), 'vit_s16': (16, 384, 12, 6), 'vit_b16': (16, 768, 12, 12),
         'vit_b32': (32, 768, 12, 12), 'vit_l16': (16, 1024, 24, 16)}


def _vgg(stages, batch_norm, *, image_size, **kw):
  del image_size
  return vgg.VGG(stages, batch_norm=batch_norm, **kw)


def _resnet(block, depths, *, image_size, **kw):
  del image_size
  return resnet.ResNet(block, depths, **kw)


def _vit(patch, dim, depth, heads, **kw):
  return vit.ViT(patch=patch, dim=dim, depth=depth, heads=heads, **kw)


for _d, _stages in VGG_STAGES.items():
  _BUILDERS[f'vgg{_d}'] = functools.partial(_vgg, _stages, False)
  _BUILDERS[f'vgg{_d}_bn'] = functools.partial(_vgg, _stages, True)
for _d, (_block, _depths) in RESNETS.items():
  _BUILDERS[f'resnet{_d}'] = functools.partial(_resnet, _block, _depths)
for _name, _cfg in VITS.items():
  _BUILDERS[_name] = functools.partial(_vit, *_cfg)

# CPU-sized variants for the embedded study (128 px phantoms): CAM grids of 16x16, 8x8, 8x8.
# vit_tiny embeds patches with a conv stem: trained from scratch on a few thousand images, the
# linear patchify stem did not learn the phantom lesion at all in 10 epochs; the conv stem does.
_BUILDERS['vgg_tiny'] = functools.partial(
    _vgg, ((8,), (16,), (32, 32), (64, 64)), True, pool_size=1, hidden=64, dropout=0.0)
_BUILDERS['resnet_tiny'] = functools.partial(
    _resnet, resnet.BasicBlock, (1, 1, 1, 1), widths=(16, 32, 64, 64), strides=(1, 2, 2, 1),
    stem_kernel=5, stem_stride=2)
_BUILDERS['vit_tiny'] = functools.partial(_vit, 16, 96, 4, 4, mlp_ratio=2.0,
                                          conv_stem=(16, 32, 64, 96))

# Depth series for the embedded study (Qiu et al.'s question within a family): at 64 px every
# member has an 8x8 CAM grid and its family's widths; only the number of layers changes.
# vgg_tiny_k: k convs per stage (depth 4k + 3); resnet_tiny_k: k basic blocks per stage (2 + 8k);
# vit_tiny_k: k transformer blocks behind a patch-8 conv stem (4k + 5).
FAMILIES = ('vgg', 'resnet', 'vit')
SERIES_LEVELS = (1, 2, 3)
for _k in SERIES_LEVELS:
  _BUILDERS[f'vgg_tiny_{_k}'] = functools.partial(
      _vgg, tuple((w,) * _k for w in (8, 16, 32, 64)), True, pool_size=1, hidden=64,
      dropout=0.0)
  _BUILDERS[f'resnet_tiny_{_k}'] = functools.partial(
      _resnet, resnet.BasicBlock, (_k,) * 4, widths=(16, 32, 64, 64), strides=(1, 2, 2, 1),
      stem_kernel=5, stem_stride=2, stem_pool=False)
  _BUILDERS[f'vit_tiny_{_k}'] = functools.partial(_vit, 8, 96, _k, 4, mlp_ratio=2.0,
                                                  conv_stem=(16, 32, 64))


def family(name: str) -> str:
  """The architecture family of model ``name``: 'vgg', 'resnet' or 'vit'."""
  return next(f for f in FAMILIES if check_name(name).startswith(f))


# Compute dtypes by name (parameters stay float32): training (``train.dtype``), CAMs and scoring
# (``cam.dtype``).
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str, field: str = 'dtype'):
  """The jnp dtype named ``name`` (a key of ``COMPUTE_DTYPES``); BadInput naming ``field``."""
  if name not in COMPUTE_DTYPES:
    raise BadInput(f'unknown {field} {name!r}; choose one of: {", ".join(COMPUTE_DTYPES)}')
  return COMPUTE_DTYPES[name]


def names() -> list[str]:
  """Every model name ``create`` accepts."""
  return sorted(_BUILDERS)


def check_name(name: str) -> str:
  """``name`` if the registry has it, else a ValueError naming every choice."""
  if name not in _BUILDERS:
    raise BadInput(f'unknown model {name!r}; choose one of: {", ".join(names())}')
  return name


def _build(name: str, options: tuple, seed) -> nnx.Module:
  return _BUILDERS[name](rngs=nnx.Rngs(jax.random.key(seed)), **dict(options))


@functools.lru_cache(maxsize=None)
def _initial_state(name: str, options: tuple):
  """``state(seed)``: the initial weights of model ``name`` built with ``options`` (sorted
  (key, value) pairs, no compute dtype: it does not change the weights) as one compiled
  program, shared by every seed and cached on disk by ``core.compile_cache``, where building
  eagerly compiles each initialiser once per shape (the same weights: ``tests/test_models.py``)."""
  return jax.jit(lambda seed: nnx.state(_build(name, options, seed)))


@functools.lru_cache(maxsize=None)
def _graphdef(name: str, options: tuple):
  return nnx.graphdef(nnx.eval_shape(lambda: _build(name, options, 0)))


def create(name: str, *, num_classes: int = 1, in_channels: int = 1, image_size: int = 224,
           seed: int = 0, dtype=None, normalisation=None, **overrides) -> nnx.Module:
  """Builds model ``name`` with fresh weights from ``seed``; one logit when ``num_classes == 1``.

  ``normalisation``: the input statistics the model is fed with (``normalisation.of``'s forms,
  a recipe's ``{'mean': [...], 'std': [...]}`` among them), kept as ``model.normalisation``;
  None: ``normalisation.legacy()``, the former pipeline constants.
  """
  options = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                 **overrides)
  weights = _initial_state(check_name(name), tuple(sorted(options.items())))(seed)
  options['dtype'] = dtype
  model = nnx.merge(_graphdef(name, tuple(sorted(options.items()))), weights)
  model.normalisation = (normalisation_lib.legacy(in_channels) if normalisation is None else
                         normalisation_lib.of(normalisation, in_channels, 'recipe normalisation'))
  return model


def cam_layers(model: nnx.Module) -> tuple[str, ...]:
  """The layer names a CAM can explain, shallow to deep."""
  return model.cam_layers


def default_cam_layer(model: nnx.Module) -> str:
  """The literature's CAM layer: last conv stage for CNNs, last block's norm1 for ViT."""
  return model.default_cam_layer


def resolve_layer(model: nnx.Module, layer: str | None) -> str:
  """``layer`` checked against the model's CAM layers; empty or None gives the default."""
  if not layer:
    return model.default_cam_layer
  if layer not in model.cam_layers:
    raise BadInput(f'unknown CAM layer {layer!r} for {type(model).__name__}; '
                   f'choose one of: {", ".join(model.cam_layers)}')
  return layer


def depth(model: nnx.Module) -> int:
  """Weight layers (conv, linear) on the longest input-to-logit path: the number in VGG16's
  and ResNet50's names; for a ViT its stem, four linear layers per block, and the head."""
  return model.weight_layers


def parameter_blocks(model: nnx.Module) -> dict[str, tuple[str, ...]]:
  """The model's parameter blocks in forward order: block name -> the state paths it owns.

  VGG: each conv and BatchNorm of ``features``, each Linear of ``classifier``. ResNet: the stem
  (``conv1``, ``bn1``), each residual block, ``fc``. ViT: the patch embedding with the class
  token and position embeddings, each block, the final ``norm``, ``head``.
  """
  if isinstance(model, vgg.VGG):
    return {f'{part}.{i}': (f'{part}.{i}',) for part in ('features', 'classifier')
            for i, f in enumerate(getattr(model, part))
            if isinstance(f, (nnx.Conv, nnx.BatchNorm, nnx.Linear))}
  if isinstance(model, resnet.ResNet):
    residual = {f'layer{k}.{j}': (f'layer{k}.{j}',) for k in range(1, model.num_stages + 1)
                for j in range(len(getattr(model, f'layer{k}')))}
    return {'stem': ('conv1', 'bn1'), **residual, 'fc': ('fc',)}
  if isinstance(model, vit.ViT):
    return {'patch_embed': ('patch_embed', 'cls_token', 'pos_embed'),
            **{f'blocks.{i}': (f'blocks.{i}',) for i in range(len(model.blocks))},
            'norm': ('norm',), 'head': ('head',)}
  raise BadInput(f'no parameter blocks known for {type(model).__name__}; '
                 'expected a VGG, ResNet or ViT of cam_jax.models')
