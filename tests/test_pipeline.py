"""The TFDS-backed phantom splits and the grain train / eval pipelines."""

import numpy as np
import pytest

from cam_jax import data
from cam_jax.data import phantom, pipeline


def test_splits_hold_the_generator_images(tiny_splits, tiny_data_config):
  test = tiny_splits['test']
  assert len(test) == tiny_data_config.num_test
  start = tiny_data_config.num_train + tiny_data_config.num_validation  # splits are consecutive
  spec = phantom.PhantomSpec(image_size=tiny_data_config.image_size)
  direct = phantom.generate(spec, tiny_data_config.seed, start, len(test))
  seen = set()
  for i in range(len(test)):  # TFDS stores records in its own (deterministic) order
    rec = test[i]
    index = int(_text(rec['id']).rsplit('-', 1)[1])
    seen.add(index)
    j = index - start
    np.testing.assert_array_equal(rec['image'][..., 0], np.round(direct['image'][j] * 255))
    np.testing.assert_array_equal(rec['mask'], direct['mask'][j])
    assert int(rec['label']) == direct['label'][j]
  assert seen == set(range(start, start + len(test)))


def _text(value):
  return value.decode() if isinstance(value, bytes) else str(value)


def test_unknown_split_and_dataset_name_the_choices(tiny_data_config, data_dir):
  with pytest.raises(ValueError, match="unknown split 'val'; choose one of: train, validation, test"):
    data.open_split(tiny_data_config, 'val', data_dir)
  bad = tiny_data_config.copy_and_resolve_references()
  bad.name = 'siim'
  with pytest.raises(ValueError, match="unknown data set 'siim'; choose one of: phantom"):
    data.open_split(bad, 'test', data_dir)


@pytest.mark.parametrize('batch_size', [5, 8, 32, 64])
def test_eval_batches_yield_every_image_exactly_once(tiny_splits, batch_size):
  test = tiny_splits['test']
  ids, padded = [], 0
  for batch in data.eval_batches(test, batch_size=batch_size):
    assert batch['image'].shape[0] == batch_size
    valid = batch['valid']
    ids += list(batch['id'][valid])
    padded += int((~valid).sum())
    assert not batch['mask'][~valid].any() and not batch['label'][~valid].any()
  expected = [_text(test[i]['id']) for i in range(len(test))]
  assert ids == expected and len(set(ids)) == len(test)
  assert padded == -len(test) % batch_size


def test_train_batches_are_seeded_shuffled_and_cover_each_record_once(tiny_splits):
  train = tiny_splits['train']

  def epoch_ids(seed, epoch):
    return [i for b in data.train_batches(train, batch_size=16, seed=seed, epoch=epoch)
            for i in b['id']]

  first = epoch_ids(0, 0)
  assert first == epoch_ids(0, 0)
  assert first != epoch_ids(0, 1) and first != epoch_ids(1, 0)
  assert len(first) == len(set(first)) == (len(train) // 16) * 16
  in_order = [_text(train[i]['id']) for i in range(len(first))]
  assert first != in_order


def test_augment_moves_image_and_mask_together():
  rng = np.random.default_rng(0)
  image = np.zeros((32, 32, 1), np.float32)
  mask = np.zeros((32, 32), bool)
  image[10:14, 20:24] = 1.0
  mask[10:14, 20:24] = True
  out = pipeline.augment({'image': image, 'mask': mask}, rng)
  bright = out['image'][..., 0] > out['image'][..., 0].mean()
  np.testing.assert_array_equal(bright, out['mask'])
  assert out['mask'].sum() == 16


def test_normalise_round_trips():
  pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  np.testing.assert_allclose(pipeline.denormalise(pipeline.normalise(pixels)), pixels / 255.0,
                             atol=1e-6)
