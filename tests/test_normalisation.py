"""The input normalisation stored in the recipe: where it comes from, how it travels with the
model (checkpoint, training, scoring, ROAD's noise)."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cam_jax
from cam_jax import models, presets
from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.data import pipeline
from cam_jax.metrics import faithfulness
from cam_jax.models import checkpoint, normalisation
from cam_jax.scoring import agreement
from cam_jax.train import loop


def _split_pixels(source):
  return np.stack([source[i]['image'] for i in range(len(source))]).astype(np.float64) / 255.0


def test_dataset_statistics_match_numpy(tiny_splits):
  train = tiny_splits['train']
  stats = pipeline.PixelStatistics()
  for i in range(len(train)):
    stats.add(train[i]['image'], train[i]['id'])
  got = stats.normalisation()
  pixels = _split_pixels(train)
  np.testing.assert_allclose(got.mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-12)
  np.testing.assert_allclose(got.std, pixels.std(axis=(0, 1, 2)), rtol=1e-9)
  assert abs(got.mean[0] - normalisation.LEGACY_MEAN) > 1e-3  # the phantom is not 0.5 / 0.25


def test_dataset_statistics_per_channel_by_hand():
  stats = pipeline.PixelStatistics()
  stats.add(np.array([[[0, 255, 51]], [[255, 0, 102]]], np.uint8))  # 2 x 1 pixels, 3 channels
  got = stats.normalisation()
  np.testing.assert_allclose(got.mean, (0.5, 0.5, 0.3))
  np.testing.assert_allclose(got.std, (0.5, 0.5, 0.1))
  constant = pipeline.PixelStatistics()
  constant.add(np.full((2, 2, 1), 7, np.uint8))
  with pytest.raises(BadInput, match='std'):
    constant.normalisation()
  with pytest.raises(BadInput, match="record 'x'.*uint8"):
    stats.add(np.zeros((2, 2, 1), np.float32), b'x')


def test_normalise_and_convert_by_hand():
  a = normalisation.of((0.2, 0.5), 1, 'a')
  b = normalisation.of(((0.1, 0.3), (0.25, 0.5)), 2, 'b')
  pixels = np.array([[[51, 204]]], np.uint8)  # 0.2, 0.8
  np.testing.assert_allclose(a.normalise(pixels), [[[0.0, 1.2]]], atol=1e-6)
  np.testing.assert_allclose(b.normalise(pixels), [[[0.4, 1.0]]], atol=1e-6)
  np.testing.assert_allclose(a.convert(a.normalise(pixels), b), b.normalise(pixels), atol=1e-6)
  np.testing.assert_allclose(b.input_units(0.01), (0.04, 0.02))


def test_named_normalisations_and_bad_strings():
  imagenet1, why = loop.named_normalisation('imagenet', 1)
  np.testing.assert_allclose(imagenet1, ((0.449,), (0.226,)))  # means of the RGB values
  assert 'ImageNet' in why
  assert loop.named_normalisation('imagenet', 3)[0] == ((0.485, 0.456, 0.406),
                                                         (0.229, 0.224, 0.225))
  assert loop.named_normalisation('0.4,0.2', 1)[0] == ((0.4,), (0.2,))
  assert loop.named_normalisation('0.4, 0.2', 3)[0] == ((0.4,) * 3, (0.2,) * 3)
  assert loop.named_normalisation('dataset', 1)[0] is None
  assert loop.named_normalisation('auto', 1)[0] is None
  auto, why = loop.named_normalisation('auto', 1, init_from='/w/r18.pth')
  assert auto == imagenet1 and 'pretrained init_from' in why
  for bad in ('imagnet', '0.5', '0.5,0.25,0.1', '0.5,x', '0.5,0', '2,0.1', 'nan,0.2', ''):
    with pytest.raises(BadInput, match='train.normalisation'):
      loop.named_normalisation(bad, 1)
  with pytest.raises(BadInput, match='1 or 3 input channels'):
    loop.named_normalisation('imagenet', 2)


def test_checkpoint_round_trip_keeps_the_statistics_and_old_ones_get_the_constants(tmp_path):
  recipe = checkpoint.recipe('resnet_tiny', 1, 32, 0, normalisation=(0.3123456789, 0.21))
  model = models.create(**recipe)
  assert model.normalisation == ((0.3123456789,), (0.21,))
  checkpoint.save(str(tmp_path / 'new'), recipe, model)
  loaded, got = checkpoint.load(str(tmp_path / 'new'), log=pytest.fail)
  assert got == recipe and loaded.normalisation == model.normalisation
  shutil.copytree(tmp_path / 'new', tmp_path / 'old')
  old = {k: v for k, v in recipe.items() if k != 'normalisation'}  # before the field existed
  with open(tmp_path / 'old' / 'model.json', 'w') as f:
    json.dump(old, f)
  notes = []
  loaded, got = checkpoint.load(str(tmp_path / 'old'), log=notes.append)
  assert loaded.normalisation == ((0.5,), (0.25,)) and got['normalisation'] == {
      'mean': [0.5], 'std': [0.25]}
  assert len(notes) == 1 and 'no normalisation' in notes[0]


def test_scoring_feeds_the_stored_statistics_and_scales_road_noise(tiny_splits, monkeypatch):
  """The same weights under two stored normalisations: the driver's probabilities are the
  forward pass of hand-normalised images, and ROAD's noise std is 0.01 / std."""
  seen = []

  def road_spy(predict, images, heat, targets, keys, *, noise_std, **kw):
    del predict, heat, targets, keys, kw
    seen.append(float(noise_std[0]))
    zeros = jnp.zeros(images.shape[0])
    return {'road_morf': zeros, 'road_lerf': zeros}

  monkeypatch.setattr(faithfulness, 'road', road_spy)
  records = [tiny_splits['test'][i] for i in range(8)]
  pixels = np.stack([r['image'] for r in records]).astype(np.float32) / 255.0
  base = models.create('resnet_tiny', image_size=32, seed=0)
  probs = []
  for mean, std in ((0.3, 0.2), (0.6, 0.05)):
    model = models.create('resnet_tiny', image_size=32, seed=0, normalisation=(mean, std))
    out = cam_jax.score(model, records, batch_size=8, mesh=mesh_lib.make_mesh(jax.devices()[:1]),
                        progress=False, n_resamples=10, metrics=('road',))
    hand = jax.nn.sigmoid(base(jnp.asarray((pixels - mean) / std), train=False)[:, 0])
    np.testing.assert_allclose(out.records['prob'], hand, rtol=1e-5, atol=1e-6)
    probs.append(out.records['prob'].to_numpy())
    assert seen[-1] == pytest.approx(0.01 / std)
  assert not np.allclose(probs[0], probs[1])


def test_road_noise_follows_the_channel_std():
  image = jnp.zeros((64, 64, 2))
  removed = jnp.zeros((64, 64), bool).at[8:56, 8:56].set(True)
  noisy = faithfulness.noisy_linear_imputation(image, removed, jax.random.key(0), iterations=5,
                                               noise_std=np.float32([0.1, 0.4]))
  noise = np.asarray(noisy)[np.asarray(removed)]  # (n, 2): the imputed value is 0, the mean
  np.testing.assert_allclose(noise.std(axis=0), [0.1, 0.4], rtol=0.05)


def test_training_stores_the_split_statistics_and_a_workdir_refuses_another(tiny_splits,
                                                                           tmp_path):
  cfg = presets.train_config('tiny')
  cfg.epochs = 0  # exports the initial weights: the recipe is what is under test
  mesh, logs = mesh_lib.make_mesh(jax.devices()[:1]), []
  run = lambda: loop.train(checkpoint.recipe('resnet_tiny', 1, 32, 0), cfg, tiny_splits['train'],
                           tiny_splits['validation'], workdir=str(tmp_path), mesh=mesh,
                           log=logs.append)
  result = run()
  pixels = _split_pixels(tiny_splits['train'])
  expected = {'mean': [pixels.mean()], 'std': [pixels.std()]}
  np.testing.assert_allclose(result.recipe['normalisation']['mean'], expected['mean'], rtol=1e-12)
  np.testing.assert_allclose(result.recipe['normalisation']['std'], expected['std'], rtol=1e-9)
  assert result.model.normalisation == tuple(map(tuple, result.recipe['normalisation'].values()))
  with open(os.path.join(tmp_path, loop.BEST, 'model.json')) as f:
    assert json.load(f)['normalisation'] == result.recipe['normalisation']
  assert any("normalisation mean" in m and "the training split's" in m for m in logs)
  cfg.normalisation = 'imagenet'
  with pytest.raises(BadInput, match=r'model\.normalisation\.mean: .* in the checkpoint'):
    run()


@pytest.mark.slow
def test_agreement_feeds_each_model_its_own_normalisation(tiny_splits):
  """SSIM and Spearman are symmetric, so swapping two models with different normalisations
  (the batches follow the first, the second's are converted) must give the same table, up to
  float32 rounding of the conversion (measured: 3e-5); unconverted inputs move it by far more."""
  records = [tiny_splits['test'][i] for i in range(8)]
  a = models.create('resnet_tiny', image_size=32, seed=0, normalisation=(0.3, 0.2))
  b = models.create('vgg_tiny', image_size=32, seed=1, normalisation=(0.6, 0.05))
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  ab = agreement.map_agreement(a, b, records, batch_size=8, mesh=mesh)
  ba = agreement.map_agreement(b, a, records, batch_size=8, mesh=mesh)
  np.testing.assert_allclose(ab['ssim'], ba['ssim'], atol=2e-4)
  np.testing.assert_allclose(ab['spearman'], ba['spearman'], atol=2e-4)
