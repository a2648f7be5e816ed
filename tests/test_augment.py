"""Real-radiograph augmentation: the identity case, masks moved with their images, no flip by
default, a hand-checked flip, and exact resumption through grain."""

import numpy as np
import pytest

from cam_jax import data
from cam_jax.core.errors import BadInput
from cam_jax.data import augment, pipeline
from cam_jax.models import normalisation

LEGACY = normalisation.legacy()

IDENTITY = augment.CropRotate(scale=(1, 1), ratio=(1, 1), degrees=0, brightness=0, contrast=0)


def _example(size=48):
  rng = np.random.default_rng(0)
  mask = np.zeros((size, size), bool)
  mask[6:20, 4:16] = True  # on the image's left
  image = (rng.normal(size=(size, size, 1)) * 0.05 + mask[..., None]).astype(np.float32)
  return {'image': image, 'mask': mask, 'label': np.int32(1)}


def test_identity_parameters_change_nothing():
  ex = _example()
  out = IDENTITY(ex, np.random.default_rng(1))
  np.testing.assert_allclose(out['image'], ex['image'], atol=1e-5)
  np.testing.assert_array_equal(out['mask'], ex['mask'])


def test_a_flip_mirrors_columns_and_is_off_by_default():
  ex = _example()
  flipped = [augment.CropRotate(scale=(1, 1), ratio=(1, 1), degrees=0, brightness=0, contrast=0,
                                hflip=True)(ex, np.random.default_rng(s)) for s in range(8)]
  mirrored = [np.array_equal(f['mask'], ex['mask'][:, ::-1]) for f in flipped]
  assert any(mirrored) and not all(mirrored)
  for f, m in zip(flipped, mirrored):
    np.testing.assert_allclose(f['image'], ex['image'][:, ::-1] if m else ex['image'], atol=1e-5)
  for seed in range(20):  # the default never moves the lesion to the right half
    out = augment.CropRotate()(ex, np.random.default_rng(seed))
    assert np.nonzero(out['mask'])[1].mean() < 24


def test_masks_move_with_their_images():
  ex = _example()
  for seed in range(10):
    out = augment.CropRotate(brightness=0, contrast=0)(ex, np.random.default_rng(seed))
    bright = out['image'][..., 0] > 0.5
    agree = (bright == out['mask']).mean()
    assert agree > 0.97, (seed, agree)
    assert out['mask'].sum() >= 0.8 * ex['mask'].sum()  # a crop of at least 70% area zooms in


def test_the_transform_is_the_crop_it_draws():
  """Rotation 0, no flip: output pixel (r, c) samples input (r0 + r * ch / h, c0 + c * cw / w)."""
  aug = augment.CropRotate(degrees=0)
  matrix, offset = aug.transform(np.random.default_rng(3), (40, 60))
  assert matrix[0, 1] == matrix[1, 0] == 0
  corner = offset
  far = matrix @ np.array([39, 59]) + offset
  assert -0.5 <= corner[0] and far[0] <= 39.5 and -0.5 <= corner[1] and far[1] <= 59.5
  assert matrix[0, 0] <= 1 and matrix[1, 1] <= 1  # a crop, clipped to the image
  square = augment.CropRotate(degrees=0, ratio=(1, 1))
  for seed in range(10):  # square crops of a square image keep the drawn share of its area
    m, _ = square.transform(np.random.default_rng(seed), (40, 40))
    assert m[0, 0] == m[1, 1] and 0.7 - 1e-9 <= m[0, 0] ** 2 <= 1


def test_a_restored_iterator_repeats_the_augmentation(tiny_splits):
  make = lambda: iter(data.train_batches(tiny_splits['train'], batch_size=16, seed=2, epochs=2,
                                         normalisation=LEGACY, augmenter=augment.CropRotate()))
  whole = list(make())
  it = make()
  next(it)
  fresh = make()
  fresh.set_state(it.get_state())
  for a, b in zip(list(fresh), whole[1:]):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['mask'], b['mask'])
  plain = next(iter(data.train_batches(tiny_splits['train'], batch_size=16, seed=2,
                                         normalisation=LEGACY)))
  assert not np.array_equal(plain['image'], whole[0]['image'])


def test_named_augmentations():
  assert augment.named('shift') is pipeline.augment
  assert augment.named('crop_rotate', hflip=True).hflip
  with pytest.raises(BadInput, match="unknown config.train.augment 'mixup'"):
    augment.named('mixup')
