"""The TFDS-backed phantom splits and the grain train / eval pipelines."""

import os
import subprocess
import sys

import numpy as np
import pytest

from cam_jax import data
from cam_jax.core.errors import BadInput
from cam_jax.data import phantom, pipeline
from cam_jax.models import normalisation

LEGACY = normalisation.legacy()


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
  with pytest.raises(BadInput, match="unknown split 'val'; choose one of: train, validation, test"):
    data.open_split(tiny_data_config, 'val', data_dir)
  bad = tiny_data_config.copy_and_resolve_references()
  bad.name = 'mimic'
  with pytest.raises(ValueError, match="unknown data set 'mimic'; choose one of: phantom, siim, "
                     "siim_png, nih, chexlocalize, csv"):
    data.open_split(bad, 'test', data_dir)


@pytest.mark.parametrize('batch_size', [5, 8, 32, 64])
def test_eval_batches_yield_every_image_exactly_once(tiny_splits, batch_size):
  test = tiny_splits['test']
  ids, padded = [], 0
  for batch in data.eval_batches(test, batch_size=batch_size, normalisation=LEGACY):
    assert batch['image'].shape[0] == batch_size
    valid = batch['valid']
    ids += list(batch['id'][valid])
    padded += int((~valid).sum())
    assert not batch['mask'][~valid].any() and not batch['label'][~valid].any()
  expected = [_text(test[i]['id']) for i in range(len(test))]
  assert ids == expected and len(set(ids)) == len(test)
  assert padded == -len(test) % batch_size


def _ids(batches):
  return [[_text(i) for i in b['id']] for b in batches]


def test_train_batches_are_seeded_shuffled_and_cover_each_record_once_per_epoch(tiny_splits):
  train = tiny_splits['train']
  run = lambda seed: _ids(data.train_batches(train, batch_size=16, seed=seed, epochs=2,
                                             normalisation=LEGACY))
  steps = len(train) // 16
  batches = run(0)
  assert batches == run(0) and batches != run(1)
  assert len(batches) == 2 * steps
  first, second = (sum(batches[e * steps:(e + 1) * steps], []) for e in (0, 1))
  assert len(first) == len(set(first)) == steps * 16 == len(set(second))
  assert first != second
  assert first != [_text(train[i]['id']) for i in range(len(first))]


def test_a_restored_train_iterator_continues_exactly(tiny_splits):
  """The iterator state saved after k batches, set on a fresh iterator, yields batches k+1...
  with the same records and the same augmented pixels."""
  make = lambda: iter(data.train_batches(tiny_splits['train'], batch_size=16, seed=3, epochs=2,
                                         normalisation=LEGACY))
  whole = list(make())
  it = make()
  for _ in range(3):
    next(it)
  state = it.get_state()
  fresh = make()
  fresh.set_state(state)
  rest = list(fresh)
  assert len(rest) == len(whole) - 3
  for a, b in zip(rest, whole[3:]):
    np.testing.assert_array_equal(a['image'], b['image'])
    assert list(a['id']) == list(b['id'])


def test_processes_split_each_global_batch_between_them(tiny_splits):
  """Process p holds rows [8p, 8p + 8) of each global batch of 16, augmented alike: stacked,
  the processes' batches are the single process's, row for row."""
  train = tiny_splits['train']
  one = list(data.train_batches(train, batch_size=16, seed=0, normalisation=LEGACY, epochs=2))
  per = [list(data.train_batches(train, batch_size=16, seed=0, normalisation=LEGACY, epochs=2,
                                 process_index=p,
                                 process_count=2)) for p in (0, 1)]
  assert len(per[0]) == len(per[1]) == len(one) == 8
  for whole, first, second in zip(one, *per):
    assert len(first['id']) == len(second['id']) == 8
    assert list(first['id']) + list(second['id']) == list(whole['id'])
    np.testing.assert_array_equal(np.concatenate([first['image'], second['image']]),
                                  whole['image'])
  with pytest.raises(ValueError, match='not divisible by the 3 processes'):
    data.train_batches(train, batch_size=16, seed=0, normalisation=LEGACY, process_count=3)


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


@pytest.mark.slow
def test_two_processes_preparing_one_data_set_take_turns(tmp_path):
  """Both get the data; exactly one prepares it (the other waits on the lock and reads it)."""
  script = ('import sys\n'
            'from cam_jax import data, presets\n'
            "source = data.open_split(presets.data_config('tiny'), 'test', sys.argv[1])\n"
            "print('records', len(source), sorted(str(source[i]['id']) for i in range(3)))\n")
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  procs = [subprocess.Popen([sys.executable, '-c', script, str(tmp_path)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
  results = [next(l for l in out.splitlines() if l.startswith('records')) for out, _ in outs]
  assert results[0] == results[1] and results[0].startswith('records 32 ')
  prepared = sum(out.count('downloaded and prepared') for out, _ in outs)
  assert prepared == 1, [out for out, _ in outs]
  leftovers = [p for p in tmp_path.rglob('*') if 'incomplete' in p.name]
  assert not leftovers, leftovers


def test_the_data_directory_is_the_config_then_the_environment_then_the_user_cache(
    monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  monkeypatch.delenv(data.cache.ENV_VAR, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  assert data.cache.data_dir() == str(tmp_path / 'cache' / 'cam_jax' / 'datasets')
  monkeypatch.delenv('XDG_CACHE_HOME')
  assert data.cache.data_dir() == os.path.expanduser('~/.cache/cam_jax/datasets')
  monkeypatch.setenv(data.cache.ENV_VAR, 'shared')
  assert data.cache.data_dir() == str(tmp_path / 'shared')
  assert data.cache.data_dir('mine') == str(tmp_path / 'mine')
