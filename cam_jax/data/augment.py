"""Training augmentation for real radiographs: a random resized crop (Szegedy et al. 2015's
Inception crop, as torchvision's ``RandomResizedCrop`` draws it), a small rotation and
brightness / contrast jitter, as one affine resampling of the image (bilinear, edges repeated)
and of its mask (nearest, zero outside). Horizontal flips are off by default: laterality
matters in a chest X-ray (the heart is on the left).

Each call draws from the ``np.random.Generator`` grain's ``random_map`` gives it, seeded by the
record's position, so a restored iterator repeats the same augmentation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from cam_jax.core.errors import BadInput
from cam_jax.data import pipeline


@dataclasses.dataclass(frozen=True)
class CropRotate:
  """``scale``: the crop's share of the image area; ``ratio``: its width / height;
  ``degrees``: the largest rotation either way; ``brightness``: the largest shift and
  ``contrast`` the largest relative gain of the normalised image; ``hflip``: mirror half of the
  images."""
  scale: tuple[float, float] = (0.7, 1.0)
  ratio: tuple[float, float] = (0.85, 1.0 / 0.85)
  degrees: float = 10.0
  brightness: float = 0.2
  contrast: float = 0.1
  hflip: bool = False

  def transform(self, rng: np.random.Generator, shape: tuple[int, int]):
    """The (matrix, offset) taking output (row, col) to input (row, col), drawn from ``rng``."""
    h, w = shape
    area = h * w * rng.uniform(*self.scale)
    aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
    ch, cw = min(math.sqrt(area / aspect), h), min(math.sqrt(area * aspect), w)
    centre = np.array([rng.uniform(ch / 2, h - ch / 2), rng.uniform(cw / 2, w - cw / 2)]) - 0.5
    angle = math.radians(rng.uniform(-self.degrees, self.degrees))
    flip = -1.0 if self.hflip and rng.random() < 0.5 else 1.0
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = rotation @ np.diag([ch / h, flip * cw / w])
    return matrix, centre - matrix @ (np.array([h, w]) - 1) / 2

  def __call__(self, example: dict, rng: np.random.Generator) -> dict:
    image, mask = example['image'], example['mask']
    matrix, offset = self.transform(rng, mask.shape)
    out = np.empty_like(image)
    for c in range(image.shape[-1]):
      out[..., c] = ndimage.affine_transform(image[..., c], matrix, offset, order=1,
                                             mode='nearest')
    moved = ndimage.affine_transform(mask.astype(np.uint8), matrix, offset, order=0,
                                     mode='constant', cval=0).astype(bool)
    gain = rng.uniform(1 - self.contrast, 1 + self.contrast)
    out = out * gain + rng.uniform(-self.brightness, self.brightness)
    return {**example, 'image': out.astype(np.float32), 'mask': moved}


def named(name: str, *, hflip: bool = False):
  """The augmentation a training recipe names: 'shift' (``pipeline.augment``: translation and
  brightness / contrast, the phantom's) or 'crop_rotate' (``CropRotate``, real radiographs)."""
  if name == 'shift':
    return pipeline.augment
  if name == 'crop_rotate':
    return CropRotate(hflip=hflip)
  raise BadInput(f"unknown config.train.augment {name!r}; choose one of: 'shift', 'crop_rotate'")
