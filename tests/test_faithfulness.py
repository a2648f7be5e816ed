"""Faithfulness metrics against hand-worked cases, NumPy loop references and scipy's spsolve."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
import scipy.sparse.linalg

from cam_jax.metrics import faithfulness

NOISE = 0.04  # ROAD's 0.01 on [0, 1] pixels under a std of 0.25


def sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def linear_model(weights, bias):
  """A toy "model": logits (B, K) = sum over pixels of weights (K, H, W, C) * image + bias."""
  weights, bias = jnp.asarray(weights, jnp.float32), jnp.asarray(bias, jnp.float32)
  return lambda x: jnp.einsum('bhwc,khwc->bk', x, weights,
                              precision=jax.lax.Precision.HIGHEST) + bias


def np_probability(logits, target):
  """Probability of an explicit target (sign or class index) from one image's logits."""
  if len(logits) == 1:
    return 1.0 / (1.0 + np.exp(-target * logits[0]))
  e = np.exp(logits - logits.max())
  return e[target] / e.sum()


def np_explicit(logits, target):
  if len(logits) == 1:
    return (1 if logits[0] >= 0 else -1) if target == 0 else int(np.sign(target))
  return int(np.argmax(logits)) if target < 0 else int(target)


def salient_order(heat):
  """Pixel indices, most salient first, ties by ascending index."""
  return np.argsort(-np.asarray(heat, np.float64).ravel(), kind='stable')


# --- target_probability -------------------------------------------------------------------------

def test_target_probability_one_logit_hand_worked():
  logits = jnp.array([[2.0], [2.0], [-1.0], [-1.0], [0.0], [-1.0], [3.0]])
  targets = jnp.array([1, -1, 0, 1, 0, 7, -4], jnp.int32)
  # +1: sigmoid(2); -1: sigmoid(-2); 0 on logit -1 -> predicted negative: sigmoid(1); +1 on
  # logit -1: sigmoid(-1); 0 on logit 0 -> predicted positive (>= 0): 0.5; 7 is a sign: +1;
  # -4 is a sign: -1 -> sigmoid(-3).
  expected = [0.8807970779778823, 0.11920292202211755, 0.7310585786300049, 0.2689414213699951,
              0.5, 0.2689414213699951, 0.04742587317756678]
  np.testing.assert_allclose(faithfulness.target_probability(logits, targets), expected,
                             rtol=1e-6)


def test_target_probability_softmax_hand_worked():
  # softmax(log [1, 2, 5]) = [1/8, 2/8, 5/8]; -1 asks for the predicted class, 2.
  logits = jnp.log(jnp.array([[1.0, 2.0, 5.0]] * 4))
  targets = jnp.array([0, 1, 2, -1], jnp.int32)
  np.testing.assert_allclose(faithfulness.target_probability(logits, targets),
                             [0.125, 0.25, 0.625, 0.625], rtol=1e-6)


# --- deletion / insertion -----------------------------------------------------------------------

def np_blur(image, sigma):
  """Zero-padded separable Gaussian with 2 * ceil(sigma) + 1 taps, via scipy.ndimage."""
  radius = math.ceil(sigma)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps /= taps.sum()
  out = scipy.ndimage.correlate1d(np.asarray(image, np.float64), taps, axis=0, mode='constant')
  return scipy.ndimage.correlate1d(out, taps, axis=1, mode='constant')


def np_causal_auc(model, image, heat, target, n_steps, start, finish):
  """RISE's CausalMetric loop for one image: replace pixels of ``start`` by ``finish`` in heat
  order, round(i * HW / n_steps) pixels after step i; trapezoid AUC over [0, 1]."""
  h, w, c = image.shape
  hw = h * w
  order = salient_order(heat)
  target = np_explicit(model(image[None])[0], target)
  current = start.reshape(hw, c).copy()
  scores, done = [], 0
  for i in range(n_steps + 1):
    scores.append(np_probability(model(current.reshape(1, h, w, c))[0], target))
    if i < n_steps:
      upto = int(np.floor((i + 1) * hw / n_steps + 0.5))
      coords = order[done:upto]
      current[coords] = finish.reshape(hw, c)[coords]
      done = upto
  scores = np.array(scores)
  return (scores.sum() - scores[0] / 2 - scores[-1] / 2) / n_steps


@pytest.mark.parametrize('num_classes,n_steps,quantise', [(1, 16, False), (3, 5, False),
                                                          (1, 7, True)])
def test_deletion_insertion_matches_numpy_loop(num_classes, n_steps, quantise):
  rng = np.random.default_rng(num_classes + n_steps)
  b, h, w, c = 3, 8, 8, 2
  images = rng.normal(size=(b, h, w, c)).astype(np.float32)
  heat = rng.random((b, h, w)).astype(np.float32)
  if quantise:  # many ties: the order falls back to the pixel index
    heat = np.round(heat * 3) / 3
  weights = rng.normal(size=(num_classes, h, w, c)).astype(np.float32) * 0.3
  bias = rng.normal(size=(num_classes,)).astype(np.float32)
  targets = np.array([1, -1, 0] if num_classes == 1 else [2, -1, 0], np.int32)
  predict = linear_model(weights, bias)
  out = jax.jit(functools.partial(faithfulness.deletion_insertion, predict, n_steps=n_steps))(
      jnp.asarray(images), jnp.asarray(heat), jnp.asarray(targets))

  np_model = lambda x: np.einsum('bhwc,khwc->bk', x.astype(np.float64), weights) + bias
  for i in range(b):
    deletion = np_causal_auc(np_model, images[i], heat[i], targets[i], n_steps,
                             images[i], np.zeros_like(images[i]))
    insertion = np_causal_auc(np_model, images[i], heat[i], targets[i], n_steps,
                              np_blur(images[i], 5.0), images[i])
    np.testing.assert_allclose(out['deletion_auc'][i], deletion, atol=1e-5)
    np.testing.assert_allclose(out['insertion_auc'][i], insertion, atol=1e-5)


def test_deletion_insertion_hand_worked_region_model():
  # 4x4 image of ones; the logit is (sum of the top-left 2x2 region R) - 2. n_steps = 4 changes
  # 4 pixels per step. Heat on R ("right") vs heat on the bottom-right 2x2 ("wrong"; the other
  # pixels tie at 0 and follow in index order: 0..3, then 4..7, ...).
  image = jnp.ones((1, 4, 4, 1))
  region = np.zeros((4, 4, 1), np.float32)
  region[:2, :2] = 1
  predict = linear_model(region[None], [-2.0])
  right = np.zeros((4, 4), np.float32)
  right[:2, :2] = 1
  wrong = np.zeros((4, 4), np.float32)
  wrong[2:, 2:] = 1
  s = sigmoid

  def auc(points):
    return (sum(points) - points[0] / 2 - points[-1] / 2) / 4

  # Blur of ones, zero padded, 11 taps k_j ~ exp(-j^2 / 50): separable, so the blurred value at
  # (y, x) is m(y) * m(x), m(y) = sum of k_j over the j with 0 <= y + j < 4.
  taps = np.exp(-0.5 * (np.arange(-5, 6) / 5.0) ** 2)
  taps /= taps.sum()
  m = [taps[5 - y:5 - y + 4].sum() for y in range(4)]
  b00, b01, b11 = m[0] * m[0], m[0] * m[1], m[1] * m[1]
  blurred_logit = b00 + 2 * b01 + b11 - 2

  expected = {
      # Deletion: R goes in step 1 / steps 2 (pixels 0, 1) and 3 (pixels 4, 5).
      'right': (auc([s(2), s(-2), s(-2), s(-2), s(-2)]),
                auc([s(blurred_logit), s(2), s(2), s(2), s(2)])),
      'wrong': (auc([s(2), s(2), s(0), s(-2), s(-2)]),
                auc([s(blurred_logit), s(blurred_logit), s(2 + b01 + b11 - 2), s(2), s(2)])),
  }
  got = {}
  fn = jax.jit(functools.partial(faithfulness.deletion_insertion, predict, n_steps=4))
  for name, heat in (('right', right), ('wrong', wrong)):
    out = fn(image, jnp.asarray(heat[None]), jnp.array([1], jnp.int32))
    got[name] = (float(out['deletion_auc'][0]), float(out['insertion_auc'][0]))
    np.testing.assert_allclose(got[name], expected[name], atol=1e-6)
  assert got['right'][0] < got['wrong'][0] and got['right'][1] > got['wrong'][1]


def np_fill(image, fill, reference):
  """What removed pixels of one image become, by hand (``faithfulness.fill_values``)."""
  if fill == 'mean':
    return np.zeros_like(image)
  if fill == 'blur':
    return np_blur(image, 5.0)
  if fill == 'reference':
    return reference
  return np_blur(image, 2.0) + reference - np_blur(reference, 2.0)  # 'texture'


@pytest.mark.parametrize('fill', faithfulness.FILLS)
def test_every_fill_matches_numpy_loop(fill):
  """Deletion moves pixels from the image to the fill, insertion from the fill to the image;
  AUCs and curve points as RISE's loop gives them."""
  rng = np.random.default_rng(11)
  b, h, w, c, n_steps = 3, 8, 8, 1, 8
  images = rng.normal(size=(b, h, w, c)).astype(np.float32)
  reference = rng.normal(size=(b, h, w, c)).astype(np.float32)
  heat = rng.random((b, h, w)).astype(np.float32)
  weights = rng.normal(size=(1, h, w, c)).astype(np.float32) * 0.3
  targets = np.array([1, -1, 0], np.int32)
  out = jax.jit(functools.partial(faithfulness.deletion_insertion, linear_model(weights, [0.2]),
                                  n_steps=n_steps, fill=fill))(
      jnp.asarray(images), jnp.asarray(heat), jnp.asarray(targets),
      reference=jnp.asarray(reference))
  np_model = lambda x: np.einsum('bhwc,khwc->bk', x.astype(np.float64), weights) + 0.2
  for i in range(b):
    filled = np_fill(images[i].astype(np.float64), fill, reference[i].astype(np.float64))
    deletion = np_causal_auc(np_model, images[i], heat[i], targets[i], n_steps, images[i], filled)
    insertion = np_causal_auc(np_model, images[i], heat[i], targets[i], n_steps, filled,
                              images[i])
    np.testing.assert_allclose(out['deletion_auc'][i], deletion, atol=1e-5)
    np.testing.assert_allclose(out['insertion_auc'][i], insertion, atol=1e-5)
    for curve in ('deletion_curve', 'insertion_curve'):  # the AUC is the curve's trapezoid
      points = np.asarray(out[curve][i], np.float64)
      assert points.shape == (n_steps + 1,)
      np.testing.assert_allclose((points.sum() - points[[0, -1]].sum() / 2) / n_steps,
                                 out[curve.replace('curve', 'auc')][i], atol=1e-6)


def test_reference_fill_hand_worked_linear_model():
  # 2x2 image x = [3, 0; 2, 1], logit = sum(x) - 5, reference r = ones; heat order: pixels
  # 0, 2, 3, 1; n_steps = 4 moves one pixel per step.
  # Deletion (x -> r): sums 6, 4, 3, 3, 4 -> logits 1, -1, -2, -2, -1.
  # Insertion (r -> x): sums 4, 6, 7, 7, 6 -> logits -1, 1, 2, 2, 1.
  image = jnp.array([[3.0, 0.0], [2.0, 1.0]]).reshape(1, 2, 2, 1)
  heat = jnp.array([[0.9, 0.1], [0.5, 0.3]])[None]
  predict = linear_model(np.ones((1, 2, 2, 1)), [-5.0])
  out = faithfulness.deletion_insertion(predict, image, heat, jnp.array([1]), n_steps=4,
                                        fill='reference', reference=jnp.ones_like(image))
  s = sigmoid
  np.testing.assert_allclose(out['deletion_curve'][0], [s(1), s(-1), s(-2), s(-2), s(-1)],
                             rtol=1e-6)
  np.testing.assert_allclose(out['insertion_curve'][0], [s(-1), s(1), s(2), s(2), s(1)],
                             rtol=1e-6)
  np.testing.assert_allclose(out['deletion_auc'][0],
                             (s(1) / 2 + s(-1) + 2 * s(-2) + s(-1) / 2) / 4, rtol=1e-6)
  np.testing.assert_allclose(out['insertion_auc'][0],
                             (s(-1) / 2 + s(1) + 2 * s(2) + s(1) / 2) / 4, rtol=1e-6)


def near_fill_model(scale=10.0, width=0.1):
  """A model keying on "pixel value near 0" (the 'mean' fill): logit = scale * (the share of
  pixels within about ``width`` of 0) - 3."""
  return lambda x: (scale * jnp.mean(jnp.exp(-(x / width) ** 2), axis=(1, 2, 3)) - 3)[:, None]


def test_fill_cue_is_zero_for_the_image_itself_and_closed_form_for_a_fill_the_model_sees():
  rng = np.random.default_rng(4)
  b, h, w = 4, 8, 8
  images = jnp.asarray(rng.uniform(1, 2, size=(b, h, w, 1)), jnp.float32)  # no pixel near 0
  heat = jnp.asarray(rng.random((b, h, w)), jnp.float32)
  predict = near_fill_model()
  for fill in faithfulness.NEEDS_REFERENCE:  # the reference is the image: nothing changes
    out = faithfulness.fill_cue(predict, images, heat, fill=fill, reference=images, n_steps=4)
    np.testing.assert_allclose(out['change'], 0, atol=1e-6)
    np.testing.assert_allclose(out['change_curve'], 0, atol=1e-6)
  # 'mean': the share of pixels at 0 after point i is i / n_steps (64 pixels, 16 per step), so
  # the logit is 10 i / 4 - 3 and the change sigmoid(2.5 i - 3) - sigmoid(-3).
  out = faithfulness.fill_cue(predict, images, heat, fill='mean', n_steps=4)
  change = np.array([sigmoid(2.5 * i - 3) - sigmoid(-3) for i in range(5)])
  np.testing.assert_allclose(out['change_curve'], np.tile(change, (b, 1)), atol=1e-5)
  np.testing.assert_allclose(out['change'], (change.sum() - change[-1] / 2) / 4, atol=1e-5)
  assert np.all(np.asarray(out['change']) > 0.4)


def test_texture_fill_keeps_the_image_where_the_reference_is_it_and_nearest_reference():
  rng = np.random.default_rng(6)
  images = jnp.asarray(rng.normal(size=(2, 6, 6, 1)), jnp.float32)
  np.testing.assert_allclose(faithfulness.fill_values(images, 'texture', images), images,
                             atol=1e-5)
  # A pool of constant images 0, 1, 2: an image of 0.9 is nearest to 1; the image of 0 itself
  # is skipped (distance 0), so its nearest is 1 too; 1.6 goes to 2.
  pool = jnp.stack([jnp.full((6, 6, 1), v) for v in (0.0, 1.0, 2.0)])
  queries = jnp.stack([jnp.full((6, 6, 1), v) for v in (0.9, 0.0, 1.6)])
  np.testing.assert_array_equal(faithfulness.nearest_reference(queries, pool)[:, 0, 0, 0],
                                [1.0, 1.0, 2.0])
  with pytest.raises(ValueError, match="'texture' needs reference"):
    faithfulness.fill_values(images, 'texture')
  with pytest.raises(ValueError, match="unknown fill 'noise'.*rise, mean, blur"):
    faithfulness.deletion_insertion(linear_model(np.ones((1, 6, 6, 1)), [0.0]), images,
                                    images[..., 0], jnp.ones(2, jnp.int32), fill='noise')
  with pytest.raises(ValueError, match='pool'):
    faithfulness.nearest_reference(images, pool[:, :3])


def nonlinear_model(seed, h, w, c, k):
  rng = np.random.default_rng(seed)
  w1 = jnp.asarray(rng.normal(size=(h * w * c, 6)) * 0.2, jnp.float32)
  w2 = jnp.asarray(rng.normal(size=(6, k)), jnp.float32)
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


@pytest.mark.slow
def test_batch_equals_loop_of_single_images():
  rng = np.random.default_rng(3)
  b, h, w, c = 4, 10, 10, 1
  images = jnp.asarray(rng.normal(size=(b, h, w, c)), jnp.float32)
  heat = jnp.asarray(rng.random((b, h, w)), jnp.float32)
  targets = jnp.array([-1, 0, 1, -1], jnp.int32)
  predict = nonlinear_model(0, h, w, c, 2)
  fns = {
      'deletion_insertion': jax.jit(functools.partial(faithfulness.deletion_insertion, predict,
                                                      n_steps=6)),
      'road': jax.jit(functools.partial(faithfulness.road, predict, iterations=100,
                                        noise_std=NOISE)),
  }
  keys = jax.random.split(jax.random.key(0), b)  # per image: the noise follows the image
  for name, fn in fns.items():
    extra = (keys,) if name == 'road' else ()
    batch = fn(images, heat, targets, *extra)
    for i in range(b):
      single = fn(images[i:i + 1], heat[i:i + 1], targets[i:i + 1],
                  *(k[i:i + 1] for k in extra))
      for key, value in batch.items():
        np.testing.assert_allclose(value[i], single[key][0], atol=2e-6, err_msg=name)


def test_predicted_target_is_fixed_on_the_unmodified_image():
  # Softmax head whose argmax changes as pixels are deleted: "-1" must keep explaining the
  # class predicted on the unmodified image, exactly like passing that class explicitly.
  rng = np.random.default_rng(5)
  b, h, w, c = 3, 6, 6, 1
  images = jnp.asarray(rng.normal(size=(b, h, w, c)) + 1.0, jnp.float32)
  heat = jnp.asarray(rng.random((b, h, w)), jnp.float32)
  predict = linear_model(rng.normal(size=(3, h, w, c)), [0.0, 0.5, 3.0])
  explicit = jnp.argmax(predict(images), axis=-1).astype(jnp.int32)
  predicted = jnp.full((b,), -1, jnp.int32)
  road = functools.partial(faithfulness.road, keys=jax.random.split(jax.random.key(1), b),
                           iterations=50, noise_std=NOISE)
  for fn in (faithfulness.deletion_insertion, road):
    fn = jax.jit(functools.partial(fn, predict))
    a, e = fn(images, heat, predicted), fn(images, heat, explicit)
    for key in a:
      np.testing.assert_allclose(a[key], e[key], atol=1e-6)


# --- noisy linear imputation --------------------------------------------------------------------

def spsolve_imputation(image, removed):
  """ROAD's linear system, assembled pixel by pixel and solved by scipy's spsolve: each removed
  pixel = mean of its in-image neighbours weighted 1/6 (direct) and 1/12 (diagonal)."""
  h, w, c = image.shape
  holes = np.argwhere(removed)
  index = {tuple(p): n for n, p in enumerate(holes)}
  matrix = scipy.sparse.lil_matrix((len(holes), len(holes)))
  rhs = np.zeros((len(holes), c))
  for n, (y, x) in enumerate(holes):
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        yy, xx = y + dy, x + dx
        if (dy, dx) == (0, 0) or not (0 <= yy < h and 0 <= xx < w):
          continue
        weight = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
        matrix[n, n] += weight
        if removed[yy, xx]:
          matrix[n, index[(yy, xx)]] -= weight
        else:
          rhs[n] += weight * image[yy, xx]
  out = np.array(image, np.float64)
  out[removed] = scipy.sparse.linalg.spsolve(matrix.tocsc(), rhs).reshape(len(holes), c)
  return out


@pytest.mark.parametrize('pattern', ['random', 'block'])
def test_noisy_linear_imputation_matches_spsolve(pattern):
  rng = np.random.default_rng(7)
  image = rng.normal(size=(12, 12, 2)).astype(np.float32)
  if pattern == 'random':
    removed = rng.random((12, 12)) < 0.6
  else:  # one hole touching two image borders, plus a few scattered pixels
    removed = rng.random((12, 12)) < 0.1
    removed[:7, 3:] = True
  out = faithfulness.noisy_linear_imputation(jnp.asarray(image), jnp.asarray(removed),
                                             jax.random.key(0), noise_std=0.0)
  np.testing.assert_allclose(out, spsolve_imputation(image, removed), atol=1e-4)


def test_noisy_linear_imputation_noise_only_touches_removed_pixels():
  rng = np.random.default_rng(8)
  image = jnp.asarray(rng.normal(size=(24, 24, 1)), jnp.float32)
  removed = jnp.asarray(rng.random((24, 24)) < 0.8)
  clean = faithfulness.noisy_linear_imputation(image, removed, jax.random.key(0), noise_std=0.0)
  noisy = faithfulness.noisy_linear_imputation(image, removed, jax.random.key(0), noise_std=0.3)
  kept = ~np.asarray(removed)
  np.testing.assert_array_equal(np.asarray(noisy)[kept], np.asarray(image)[kept])
  noise = np.asarray(noisy - clean)[np.asarray(removed)]
  assert noise.size > 400 and abs(noise.std() - 0.3) < 0.045 and abs(noise.mean()) < 0.045


def test_noisy_linear_imputation_degenerate_masks():
  image = jnp.asarray(np.random.default_rng(9).normal(size=(5, 5, 1)), jnp.float32)
  key = jax.random.key(0)
  nothing = faithfulness.noisy_linear_imputation(image, jnp.zeros((5, 5), bool), key,
                                                 noise_std=NOISE)
  np.testing.assert_array_equal(nothing, image)
  everything = faithfulness.noisy_linear_imputation(image, jnp.ones((5, 5), bool), key,
                                                    noise_std=0.0)
  np.testing.assert_array_equal(everything, np.zeros((5, 5, 1)))  # the data mean


def test_imputation_vmap_equals_loop():
  rng = np.random.default_rng(10)
  images = jnp.asarray(rng.normal(size=(3, 9, 9, 1)), jnp.float32)
  removed = jnp.asarray(rng.random((3, 9, 9)) < 0.5)
  keys = jax.random.split(jax.random.key(2), 3)
  fn = functools.partial(faithfulness.noisy_linear_imputation, noise_std=0.1)
  batch = jax.jit(jax.vmap(fn))(images, removed, keys)
  fn = jax.jit(fn)
  for i in range(3):
    np.testing.assert_allclose(batch[i], fn(images[i], removed[i], keys[i]), atol=1e-6)


# --- ROAD ---------------------------------------------------------------------------------------

def test_road_matches_spsolve_reference():
  rng = np.random.default_rng(11)
  b, h, w, c = 2, 7, 9, 1
  images = rng.normal(size=(b, h, w, c)).astype(np.float32)
  heat = rng.random((b, h, w)).astype(np.float32)
  weights = rng.normal(size=(1, h, w, c)).astype(np.float32) * 0.5
  fractions = (0.1, 0.35, 0.5, 0.9)
  out = faithfulness.road(linear_model(weights, [0.2]), jnp.asarray(images), jnp.asarray(heat),
                          jnp.array([1, -1], jnp.int32), jax.random.split(jax.random.key(0), b),
                          fractions=fractions, noise_std=0.0)
  for i, sign in enumerate((1, -1)):
    order = salient_order(heat[i])
    curves = {'road_morf': [], 'road_lerf': []}
    for p in fractions:
      k = int(p * h * w)
      for name, coords in (('road_morf', order[:k]), ('road_lerf', order[h * w - k:])):
        removed = np.zeros(h * w, bool)
        removed[coords] = True
        imputed = spsolve_imputation(images[i], removed.reshape(h, w))
        curves[name].append(np_probability([np.sum(weights[0] * imputed) + 0.2], sign))
    for name, values in curves.items():
      np.testing.assert_allclose(out[name][i], np.mean(values), atol=1e-5)


def test_road_morf_below_lerf_for_true_relevance():
  # The model scores the brightness of a blob it looks at; the heat map is its true relevance
  # (weight x input). Removing the blob first (MoRF) must cost more than removing background.
  rng = np.random.default_rng(12)
  size, b = 20, 4
  yy, xx = np.mgrid[:size, :size]
  images, heats, weights = [], [], []
  for _ in range(b):
    cy, cx = rng.integers(5, size - 5, size=2)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5 ** 2))
    images.append(3 * blob + 0.1 * rng.normal(size=blob.shape) - 0.5)
    weights.append(blob / blob.sum())
    heats.append(np.clip(blob * images[-1], 0, None) / np.max(blob * images[-1]))
  images = jnp.asarray(np.stack(images)[..., None], jnp.float32)
  weights = jnp.asarray(np.stack(weights)[..., None], jnp.float32)

  def predict(x):  # per image: its own blob's weights
    return jnp.sum(weights * x, axis=(1, 2, 3))[:, None] * 4 - 2

  out = faithfulness.road(predict, images, jnp.asarray(np.stack(heats), jnp.float32),
                          jnp.ones((b,), jnp.int32), jax.random.split(jax.random.key(3), b),
                          noise_std=NOISE)
  assert np.all(np.asarray(out['road_morf']) + 0.2 < np.asarray(out['road_lerf']))


# --- input checks -------------------------------------------------------------------------------

def test_bad_input_raises():
  predict = linear_model(np.ones((1, 4, 4, 1)), [0.0])
  images, heat, targets = jnp.zeros((2, 4, 4, 1)), jnp.zeros((2, 4, 4)), jnp.zeros(2, jnp.int32)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match='heat'):
    faithfulness.deletion_insertion(predict, images, heat[:, :3], targets)
  with pytest.raises(ValueError, match='targets'):
    faithfulness.road(predict, images, heat, targets[:1], jax.random.split(key, 2),
                      noise_std=NOISE)
  with pytest.raises(ValueError, match='images'):
    faithfulness.deletion_insertion(predict, images[..., 0], heat, targets)
  with pytest.raises(ValueError, match='n_steps'):
    faithfulness.deletion_insertion(predict, images, heat, targets, n_steps=0)
  with pytest.raises(ValueError, match='fractions'):
    faithfulness.road(predict, images, heat, targets, jax.random.split(key, 2),
                      fractions=(0.5, 1.0), noise_std=NOISE)
  with pytest.raises(ValueError, match='removed'):
    faithfulness.noisy_linear_imputation(images[0], jnp.zeros((3, 4), bool), key,
                                         noise_std=NOISE)



def test_imputation_stops_at_its_tolerance_and_checks_it():
  """A looser tolerance takes fewer conjugate-gradient steps and ends farther from spsolve, the
  default ends within float32 rounding of it; a tolerance outside (0, 1) is refused."""
  rng = np.random.default_rng(12)
  image = rng.normal(size=(24, 24, 1)).astype(np.float32)
  removed = np.hypot(*np.mgrid[:24, :24]) > 6  # one hole; the kept pixels in a corner
  reference = spsolve_imputation(image, removed)
  solve = jax.jit(faithfulness.linear_imputation, static_argnames='tolerance')
  errors, steps = [], []
  for tolerance in (1e-2, faithfulness.CG_TOLERANCE):
    out, k = solve(jnp.asarray(image), jnp.asarray(removed), tolerance=tolerance)
    errors.append(np.abs(np.asarray(out) - reference).max())
    steps.append(int(k))
  assert steps[0] < steps[1] < faithfulness.CG_ITERATIONS
  assert errors[1] < 1e-4 < errors[0]
  with pytest.raises(ValueError, match=r'tolerance in \(0, 1\)'):
    faithfulness.linear_imputation(jnp.asarray(image), jnp.asarray(removed), tolerance=0.0)
