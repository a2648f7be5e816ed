"""The input normalisation a model is trained with: per-channel mean and std of [0, 1] pixels.

A model carries its own (``model.normalisation``, set by ``models.create`` from the recipe's
``normalisation`` field), a static, hashable attribute of its graph, so the batches fed to it
(``cam_jax.data.pipeline``), ROAD's noise and the inputs of a model compared with another all
follow the model.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cam_jax.core.errors import BadInput

# torchvision's ImageNet statistics (RGB), the input of its pretrained weights.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# What every cam_jax checkpoint before the recipe had this field was trained with.
LEGACY_MEAN, LEGACY_STD = 0.5, 0.25


class Normalisation(NamedTuple):
  """Model input = (pixels / 255 - mean) / std, per channel (tuples of floats, one a channel)."""
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def normalise(self, pixels) -> np.ndarray:
    """uint8 pixels (..., C) -> float32 model input."""
    pixels = np.asarray(pixels, np.float32) / 255.0
    return (pixels - np.float32(self.mean)) / np.float32(self.std)

  def input_units(self, pixel_amount: float) -> np.ndarray:
    """A spread of ``pixel_amount`` on [0, 1] pixels in model-input units, per channel (C,)."""
    return np.float32(pixel_amount) / np.float32(self.std)

  def convert(self, image, to: Normalisation):
    """Model input under this normalisation -> model input under ``to`` (numpy or jax)."""
    pixels = image * np.float32(self.std) + np.float32(self.mean)
    return (pixels - np.float32(to.mean)) / np.float32(to.std)

  def to_json(self) -> dict:
    return {'mean': list(self.mean), 'std': list(self.std)}


def legacy(in_channels: int = 1) -> Normalisation:
  """The former pipeline constants, (0.5, 0.25) on every channel: models created without a
  normalisation and checkpoints saved before the recipe held one."""
  return of((LEGACY_MEAN, LEGACY_STD), in_channels, 'normalisation')


def imagenet(in_channels: int) -> Normalisation:
  """ImageNet's statistics: RGB for 3 channels; for 1 channel the mean of the RGB means and of
  the RGB stds (0.449, 0.226), the grey image that ``weights``' colour-summed stem sees."""
  if in_channels == 3:
    return Normalisation(IMAGENET_MEAN, IMAGENET_STD)
  if in_channels == 1:
    return Normalisation((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
  raise BadInput(f'ImageNet normalisation is defined for 1 or 3 input channels, not '
                 f'{in_channels}')


def of(value, in_channels: int, field: str) -> Normalisation:
  """``value`` as a checked ``Normalisation`` of ``in_channels`` channels: a ``Normalisation``,
  a recipe's ``{'mean': [...], 'std': [...]}`` or a ``(mean, std)`` pair, each a number (every
  channel) or one per channel. ``field`` names the value in errors."""
  if isinstance(value, dict):
    if set(value) != {'mean', 'std'}:
      raise BadInput(f'{field}: expected keys mean and std, got {sorted(value)}')
    value = (value['mean'], value['std'])
  if not isinstance(value, (tuple, list)) or len(value) != 2:
    raise BadInput(f'{field}: expected (mean, std), got {value!r}')
  mean, std = (_channels(v, in_channels, f'{field} {name}')
               for v, name in zip(value, ('mean', 'std')))
  if not all(0.0 <= m <= 1.0 for m in mean):
    raise BadInput(f'{field}: mean {mean} must be in [0, 1] (pixel units)')
  if not all(0.0 < s for s in std):
    raise BadInput(f'{field}: std {std} must be > 0')
  return Normalisation(mean, std)


def _channels(value, in_channels, what) -> tuple[float, ...]:
  values = [value] if np.ndim(value) == 0 else list(value)
  try:
    values = [float(v) for v in values]
  except (TypeError, ValueError):
    raise BadInput(f'{what}: {value!r} is not a number or a list of numbers') from None
  if not all(math.isfinite(v) for v in values):
    raise BadInput(f'{what}: {values} must be finite')
  if len(values) == 1:
    return tuple(values) * in_channels
  if len(values) != in_channels:
    raise BadInput(f'{what}: {len(values)} values for {in_channels} input channel(s)')
  return tuple(values)
