"""Heat-map similarity: SSIM against skimage, Spearman against scipy, and the two-model
agreement table (repeatability / reproducibility) against both on host heat maps."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from skimage.metrics import structural_similarity

from cam_jax import cams, data, models
from cam_jax.core import mesh as mesh_lib
from cam_jax.metrics import similarity
from cam_jax.scoring import agreement


def _skimage_ssim(a, b):
  return structural_similarity(np.float64(a), np.float64(b), data_range=1.0,
                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


SHAPES = {'random': (23, 41), 'upsampled': (32, 32), 'ties': (11, 30)}


def _pairs(kind, n=12, seed=0):
  """``n`` float32 map pairs (2, n, H, W): ``random`` uniform noise, ``upsampled`` bilinear 4x4
  grids (heat-map-like), ``ties`` three levels with signed zeros, at 11 rows the smallest SSIM
  takes."""
  rng = np.random.default_rng(seed)
  h, w = SHAPES[kind]
  if kind == 'random':
    return np.float32(rng.random((2, n, h, w)))
  if kind == 'upsampled':
    return np.float32([[cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR) for g in grids]
                       for grids in rng.random((2, n, 4, 4)).astype(np.float32)])
  levels = rng.integers(-1, 2, size=(2, n, h, w)) * 0.5
  return np.float32(np.where(rng.random((2, n, h, w)) < 0.3, -0.0, levels))


_both = jax.jit(jax.vmap(lambda a, b: (similarity.ssim(a, b), similarity.spearman(a, b))))


@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_ssim_and_spearman_match_skimage_and_scipy(kind):
  a, b = _pairs(kind)
  got_ssim, got_rho = _both(jnp.asarray(a), jnp.asarray(b))
  for i in range(len(a)):
    np.testing.assert_allclose(got_ssim[i], _skimage_ssim(a[i], b[i]), atol=1e-5)
    np.testing.assert_allclose(got_rho[i], scipy.stats.spearmanr(a[i].ravel(), b[i].ravel())[0],
                               atol=1e-5)


@pytest.mark.slow
def test_identical_maps_score_one_and_constant_maps_have_defined_values():
  a = _pairs('upsampled', n=1)[0, 0]
  assert float(similarity.ssim(jnp.asarray(a), jnp.asarray(a))) == pytest.approx(1.0, abs=1e-6)
  assert float(similarity.spearman(jnp.asarray(a), jnp.asarray(a))) == pytest.approx(1.0, abs=1e-6)
  flat = np.full_like(a, 0.25)
  for x, y in ((flat, a), (a, flat), (flat, np.zeros_like(a)), (np.zeros_like(a),) * 2):
    # SSIM of constants is the luminance term alone, as in skimage; Spearman is 0 (scipy: NaN).
    np.testing.assert_allclose(similarity.ssim(jnp.asarray(x), jnp.asarray(y)),
                               _skimage_ssim(x, y), atol=1e-5)
    assert float(similarity.spearman(jnp.asarray(x), jnp.asarray(y))) == 0.0
  assert float(similarity.ssim(jnp.zeros((16, 16)), jnp.zeros((16, 16)))) == 1.0


@pytest.mark.slow
def test_vmap_over_pairs_equals_a_loop():
  rng = np.random.default_rng(3)
  grids = rng.random((2, 6, 4, 4)).astype(np.float32)
  a, b = (jnp.asarray(jax.image.resize(g, (6, 40, 33), 'linear')) for g in grids)
  a = a.at[2].set(0.5)  # one constant map in the batch
  both = jax.jit(jax.vmap(lambda x, y: (similarity.ssim(x, y), similarity.spearman(x, y))))
  got_ssim, got_rho = both(a, b)
  for i in range(6):
    np.testing.assert_allclose(got_ssim[i], similarity.ssim(a[i], b[i]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_rho[i], similarity.spearman(a[i], b[i]), rtol=1e-6, atol=1e-7)
  assert float(got_rho[2]) == 0.0


def test_bad_shapes_are_rejected():
  with pytest.raises(ValueError, match='at least 11 x 11'):
    similarity.ssim(jnp.zeros((10, 20)), jnp.zeros((10, 20)))
  with pytest.raises(ValueError, match='one shape'):
    similarity.ssim(jnp.zeros((12, 12)), jnp.zeros((12, 13)))
  with pytest.raises(ValueError, match='one shape'):
    similarity.spearman(jnp.zeros((12, 12)), jnp.zeros((13, 12)))


@pytest.mark.slow
def test_map_agreement_of_two_architectures_matches_host_references(tiny_splits):
  """Reproducibility table (resnet_tiny vs vgg_tiny) on 8 devices, batches of 24 over 32 records
  (16 padded rows): every record once, numbers equal to skimage / scipy on host heat maps."""
  test = tiny_splits['test']
  model_a = models.create('resnet_tiny', image_size=32, seed=0)
  model_b = models.create('vgg_tiny', image_size=32, seed=0)
  table = agreement.map_agreement(model_a, model_b, test, batch_size=24,
                                  mesh=mesh_lib.make_mesh())
  assert list(table.columns) == ['id', 'has_mask', 'ssim', 'spearman', 'flags']
  assert list(table['id']) == [str(data.pipeline.as_text(test[i]['id'])) for i in range(32)]
  assert list(table['has_mask']) == [bool(test[i]['mask'].any()) for i in range(32)]
  images = jnp.asarray(model_a.normalisation.normalise(np.stack([test[i]['image']
                                                                for i in range(32)])))
  heat = []
  for model in (model_a, model_b):
    fn, state, _ = cams.heat_function(model)
    heat.append(np.asarray(fn(state, images, jnp.ones(32, jnp.int32))[0], np.float64))
  for i in range(32):
    np.testing.assert_allclose(table['ssim'][i], _skimage_ssim(heat[0][i], heat[1][i]),
                               atol=1e-4)
    if 'constant' in table['flags'][i]:
      assert table['spearman'][i] == 0.0
    else:
      np.testing.assert_allclose(table['spearman'][i],
                                 scipy.stats.spearmanr(heat[0][i].ravel(),
                                                       heat[1][i].ravel())[0], atol=1e-3)
