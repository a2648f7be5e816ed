"""Faithfulness of heat maps: how the probability of the explained finding responds when pixels
are removed or inserted in heat-map order, on device, one batch at a time.

- Deletion and insertion (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation
  of Black-box Models", BMVC 2018): 2 * (n_steps + 1) forward passes per image.
- ROAD (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation
  Strategy for Attribution Methods", ICML 2022): 2 * len(fractions) forward passes per image,
  plus one of the unmodified batch only when a target asks for the predicted finding, and as
  many noisy linear imputations (``iterations`` conjugate-gradient steps each).

Batch functions take model-input images (B, H, W, C) (normalised, so 0 is the data mean), heat
maps (B, H, W), expected in [0, 1], int32 targets (B,) with ``cams.target_score``'s conventions,
and a jittable ``predict(images) -> logits (B, K)``. Every forward pass sees one batch of B
images; the passes run one after another under ``jax.lax.map``. A target meaning "the predicted
finding" is resolved once, on the unmodified image, and kept for every perturbed copy.

Pixel order: descending heat, ties broken by ascending row-major pixel index (a stable sort);
non-finite heat ranks as 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cam_jax import cams
from cam_jax.core.errors import BadInput

Predict = Callable[[jax.Array], jax.Array]

ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ROAD_PIXEL_NOISE = 0.01  # ROAD's noise std on [0, 1] pixels; noise_std = this / the model's std
CG_ITERATIONS = 1000  # a cap; the solver stops at CG_TOLERANCE
CG_TOLERANCE = 1e-6

# ROAD's imputation weights of the 8 neighbours (dy, dx); they sum to 1.
_NEIGHBOURS = tuple(((dy, dx), 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def target_probability(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """(B,) probability of each image's explained finding (``cams.target_score`` conventions).

  One-logit heads: ``sigmoid(sign * logit)``, sign +1 (positive finding), -1 (negative) or 0
  (the sign these logits predict). Softmax heads: the softmax column of the class index, -1 for
  the class these logits predict.
  """
  score = jax.vmap(cams.target_score)(logits, targets)
  if logits.shape[-1] == 1:
    return jax.nn.sigmoid(score)
  return jnp.exp(score - jax.nn.logsumexp(logits, axis=-1))


def _explicit_targets(logits, targets):
  """Targets with "predicted" (0 for one logit, -1 for softmax) replaced by what ``logits``
  predict, so perturbed copies of an image keep explaining the same finding."""
  if logits.shape[-1] == 1:
    predicted = jnp.where(logits[:, 0] >= 0, 1, -1)
    return jnp.where(targets == cams.PREDICTED, predicted, jnp.sign(targets)).astype(jnp.int32)
  return jnp.where(targets < 0, jnp.argmax(logits, axis=-1), targets).astype(jnp.int32)


def _asks_predicted(targets, num_logits):
  return jnp.any(targets == cams.PREDICTED) if num_logits == 1 else jnp.any(targets < 0)


def _check(images, heat, targets):
  """``targets`` as int32 after checking the shapes of the batch."""
  if images.ndim != 4:
    raise BadInput(f'images must be (B, H, W, C), got shape {images.shape}')
  if heat.shape != images.shape[:3]:
    raise BadInput(f'heat must be (B, H, W) = {images.shape[:3]}, got shape {heat.shape}')
  if jnp.shape(targets) != images.shape[:1]:
    raise BadInput(f'targets must be (B,) = {images.shape[:1]}, got shape '
                   f'{jnp.shape(targets)}')
  return jnp.asarray(targets, jnp.int32)


def _ranks(heat):
  """(B, H, W) int32 position of each pixel in the removal order (0 = most salient)."""
  flat = heat.reshape(heat.shape[0], -1)
  flat = jnp.where(jnp.isfinite(flat), flat, 0.0)
  order = jnp.argsort(flat, axis=1, stable=True, descending=True)
  return jnp.argsort(order, axis=1).astype(jnp.int32).reshape(heat.shape)


def _trapezoid(curve):
  """Trapezoid area of a curve sampled at n + 1 evenly spaced points of [0, 1], along axis 0."""
  n = curve.shape[0] - 1
  return (jnp.sum(curve, axis=0) - 0.5 * (curve[0] + curve[-1])) / n


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur of (B, H, W, C) images, per channel, zero padded (0 is the data
  mean in model-input units, as RISE pads), with a normalised kernel of 2 * ceil(sigma) + 1
  taps: 11 at RISE's sigma 5, RISE's kernel size. RISE's own 11-tap kernel (scipy's
  ``gaussian_filter`` of a delta, its tails folded back by reflection) is flatter: taps 0.088
  to 0.094 against 0.066 to 0.109 here."""
  radius = math.ceil(sigma)
  taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1) / sigma) ** 2)
  taps = taps / jnp.sum(taps)
  channels = images.shape[-1]
  for shape in ((2 * radius + 1, 1), (1, 2 * radius + 1)):
    kernel = jnp.broadcast_to(taps.reshape(*shape, 1, 1), (*shape, 1, channels))
    images = jax.lax.conv_general_dilated(
        images, kernel.astype(images.dtype), (1, 1), 'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=channels,
        precision=jax.lax.Precision.HIGHEST)
  return images


FILLS = ('mean', 'blur', 'reference', 'texture')
"""What removed pixels become (``fill_values``)."""
DELETION_FILLS = ('rise', *FILLS)
"""``deletion_insertion``'s fills: one of ``FILLS`` for both curves, or 'rise', RISE's own pair
('mean' for deletion, 'blur' for insertion)."""
NEEDS_REFERENCE = ('reference', 'texture')
FILL_NOTES = {
    'rise': "RISE's own: 0, the data mean, for deletion and a Gaussian blur for insertion",
    'mean': '0, the data mean',
    'blur': 'a Gaussian blur of the image',
    'reference': "the image's nearest healthy reference image",
    'texture': "the image's own low frequencies with the high-frequency texture of its nearest "
               'healthy reference image',
}
"""Each of ``DELETION_FILLS`` in words."""
TEXTURE_SIGMA = 2.0  # px: the 'texture' fill keeps the image's own structure above this scale


def fill_values(images: jax.Array, fill: str, reference: jax.Array | None = None, *,
                blur_sigma: float = 5.0, texture_sigma: float = TEXTURE_SIGMA) -> jax.Array:
  """(B, H, W, C) values that replace removed pixels of ``images`` (``FILLS``):

  - 'mean': 0, the data mean (RISE's deletion);
  - 'blur': ``gaussian_blur(images, blur_sigma)`` (RISE's insertion start);
  - 'reference': the pixels of ``reference`` (B, H, W, C), a healthy image per image (a
    counterfactual fill, Chang, Creager, Goldenberg & Duvenaud, "Explaining Image Classifiers
    by Counterfactual Generation", ICLR 2019, argue for in-distribution infills);
  - 'texture': the image's own low frequencies (``gaussian_blur`` at ``texture_sigma``) plus
    the high frequencies of ``reference`` (itself minus its blur): healthy texture laid on the
    image's anatomy, so a removed region keeps lung texture and shows no seam (the image
    splitting into frequency bands as in Burt & Adelson's Laplacian pyramid, 1983).

  'mean' and 'blur' erase texture, and 'reference' pastes anatomy that does not line up; on
  the phantom, whose lesion is lung without texture behind a thin line, each of them creates
  the finding (``fill_cue``; ``scoring.fill_check`` measures it).
  """
  if fill == 'mean':
    return jnp.zeros_like(images)
  if fill == 'blur':
    return gaussian_blur(images, _positive(blur_sigma, 'blur_sigma'))
  if fill in NEEDS_REFERENCE:
    if reference is None or jnp.shape(reference) != images.shape:
      raise BadInput(f'fill {fill!r} needs reference images of shape {images.shape}, got '
                     f'{None if reference is None else jnp.shape(reference)}')
    reference = jnp.asarray(reference, images.dtype)
    if fill == 'reference':
      return reference
    sigma = _positive(texture_sigma, 'texture_sigma')
    return gaussian_blur(images, sigma) + reference - gaussian_blur(reference, sigma)
  raise BadInput(f'unknown fill {fill!r}; choose one of: {", ".join(FILLS)}')


def _positive(value, name):
  if value <= 0:
    raise BadInput(f'{name} must be > 0, got {value}')
  return value


def nearest_reference(images: jax.Array, pool: jax.Array) -> jax.Array:
  """(B, H, W, C): for each image the image of ``pool`` (N, H, W, C) nearest to it in squared
  pixel distance, an exact copy of it (distance 0) skipped: the closest healthy counterfactual
  (the "nearest unlike neighbour" of Keane & Smyth, "Good Counterfactuals and Where to Find
  Them", ICCBR 2020). One pass over the pool, B distances at a time."""
  if pool.ndim != 4 or pool.shape[1:] != images.shape[1:] or pool.shape[0] < 1:
    raise BadInput(f'pool must be (N >= 1, {", ".join(map(str, images.shape[1:]))}), got shape '
                   f'{pool.shape}')
  distance = jax.lax.map(lambda r: jnp.sum((images - r) ** 2, axis=(1, 2, 3)), pool)
  return pool[jnp.argmin(jnp.where(distance > 0, distance, jnp.inf), axis=0)]


def check_fill(fill: str) -> tuple[str, str]:
  """(deletion's, insertion's) fill of one of ``DELETION_FILLS``."""
  if fill not in DELETION_FILLS:
    raise BadInput(f'unknown fill {fill!r}; choose one of: {", ".join(DELETION_FILLS)}')
  return ('mean', 'blur') if fill == 'rise' else (fill, fill)


def _counts(hw, n_steps):
  """Pixels changed at each of the n_steps + 1 points (integer rounding, halves up)."""
  if n_steps < 1:
    raise BadInput(f'n_steps must be >= 1, got {n_steps}')
  return [(2 * i * hw + n_steps) // (2 * n_steps) for i in range(n_steps + 1)]


def _curves(predict, images, ranks, targets, logits, canvases, n_steps):
  """(len(canvases), n_steps + 1, B) probabilities of the explained targets along each
  ``(start, finish)`` pair of canvases: point i has the first counts[i] pixels of the order
  taken from finish, the rest from start. A curve starting from ``images`` itself (``None``)
  reuses ``logits`` for its point 0."""
  counts = _counts(images.shape[1] * images.shape[2], n_steps)
  stacked = jnp.stack([images if c is None else c for pair in canvases for c in pair])
  cases = [(2 * k, 2 * k + 1, count) for k, (start, _) in enumerate(canvases)
           for i, count in enumerate(counts) if not (i == 0 and start is None)]
  starts, finishes, cnt = (jnp.array(x, jnp.int32) for x in zip(*cases))

  def score(case):
    start, finish, count = case
    return target_probability(predict(jnp.where(ranks < count, stacked[finish], stacked[start])),
                              targets)

  points = jax.lax.map(score, (starts, finishes, cnt))
  out, at = [], 0
  for start, _ in canvases:
    if start is None:
      out.append(jnp.concatenate([target_probability(logits, targets)[None],
                                  points[at:at + n_steps]]))
      at += n_steps
    else:
      out.append(points[at:at + n_steps + 1])
      at += n_steps + 1
  return jnp.stack(out)


def deletion_insertion(predict: Predict, images: jax.Array, heat: jax.Array,
                       targets: jax.Array, *, n_steps: int = 16, blur_sigma: float = 5.0,
                       fill: str = 'rise',
                       reference: jax.Array | None = None) -> dict[str, jax.Array]:
  """RISE's deletion and insertion AUCs (Petsiuk, Das & Saenko, BMVC 2018), per image.

  Point i = 0..n_steps of a curve has the first round(i * H * W / n_steps) pixels of the heat
  order changed (integer rounding, halves up; when n_steps divides H * W this is RISE's
  ``step = H * W / n_steps`` pixels per step). Deletion moves them from the image to
  ``fill_values``; insertion moves them from ``fill_values`` to the image. ``fill``: one of
  ``DELETION_FILLS``; the default 'rise' deletes to 0, the data mean, and inserts into
  ``gaussian_blur(image, blur_sigma)``, as RISE does; 'reference' and 'texture' use
  ``reference`` (B, H, W, C), one healthy image per image, for both (``fill_values``). Each
  point scores ``target_probability`` of the perturbed image, and the value is the trapezoid
  area of the n_steps + 1 points over the fractions 0, 1/n_steps, ..., 1 (the x axis RISE's
  ``auc`` uses). Lower deletion / higher insertion AUC = more faithful.

  Returns ``deletion_auc`` and ``insertion_auc`` (B,), in [0, 1], and their points
  ``deletion_curve`` and ``insertion_curve`` (B, n_steps + 1).
  """
  targets = _check(images, heat, targets)
  delete_to, insert_into = check_fill(fill)
  ranks = _ranks(heat)[..., None]
  logits = predict(images)  # deletion point 0: the unmodified images
  targets = _explicit_targets(logits, targets)
  canvases = [(None, fill_values(images, delete_to, reference, blur_sigma=blur_sigma)),
              (fill_values(images, insert_into, reference, blur_sigma=blur_sigma), None)]
  deletion, insertion = _curves(predict, images, ranks, targets, logits, canvases, n_steps)
  return {'deletion_auc': _trapezoid(deletion), 'insertion_auc': _trapezoid(insertion),
          'deletion_curve': deletion.T, 'insertion_curve': insertion.T}


def fill_cue(predict: Predict, images: jax.Array, heat: jax.Array, *, fill: str,
             reference: jax.Array | None = None, n_steps: int = 16,
             blur_sigma: float = 5.0) -> dict[str, jax.Array]:
  """How much a fill alone moves the probability of the positive finding (target +1: the
  positive sign of a one-logit head, class 1 of a softmax head), per image: pixels are deleted
  to ``fill_values(images, fill, reference)`` in the order of ``heat`` (for a known-truth
  check, a random order on healthy images), as in ``deletion_insertion``.

  Returns ``change_curve`` (B, n_steps + 1), the probability at each point minus that of the
  unmodified image, and ``change`` (B,), its trapezoid area over the fractions [0, 1]: about 0
  when the fill carries no evidence of the finding, positive when removing pixels creates it
  (the confound of a fill that looks like the lesion; Hooker et al., "A Benchmark for
  Interpretability Methods in Deep Neural Networks", NeurIPS 2019, on removals that leave the
  data distribution).
  """
  positive = jnp.ones(images.shape[:1], jnp.int32)
  targets = _check(images, heat, positive)
  ranks = _ranks(heat)[..., None]
  logits = predict(images)
  canvases = [(None, fill_values(images, fill, reference, blur_sigma=blur_sigma))]
  curve = _curves(predict, images, ranks, targets, logits, canvases, n_steps)[0]
  change = curve - curve[:1]
  return {'change': _trapezoid(change), 'change_curve': change.T}


def _neighbour_sum(x):
  """Weighted sum of the 8 neighbours of every pixel of (H, W, C) ``x``, zero outside."""
  h, w = x.shape[:2]
  padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  return sum(weight * padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
             for (dy, dx), weight in _NEIGHBOURS)


def _safe_div(a, b):
  ok = b > 0
  return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


def linear_imputation(image: jax.Array, removed: jax.Array, *, iterations: int = CG_ITERATIONS,
                      tolerance: float = CG_TOLERANCE) -> tuple[jax.Array, jax.Array]:
  """ROAD's linear imputation (Rong et al., ICML 2022) of one (H, W, C) image, without noise:
  (the image with its removed pixels solved, the conjugate-gradient steps taken).

  Each removed pixel equals the weighted mean of its neighbours inside the image (direct
  neighbours weight 1/6, diagonal 1/12, normalised by the weights present), all removed pixels
  solved jointly, channel by channel. Kept pixels are returned unchanged.

  The system (D - N) x = b over the removed pixels (D: the weight sum present, N: the weights
  between removed neighbours, b: the weighted known neighbours) is symmetric positive definite
  when every connected hole touches a kept pixel, i.e. unless every pixel is removed (then the
  solution is 0, the data mean). Jacobi-preconditioned conjugate gradient solves it until the
  preconditioned residual falls to ``tolerance`` times that of b, at most ``iterations`` steps,
  from the mean of the kept pixels. (Tried and dropped: starting from the solution of a smaller
  nested hole saved no steps on smooth holes and carries the values of pixels the larger hole
  removes; starting from the imputation at half resolution, upsampled, saved about 10%. The
  step count grows with the hole's diameter; a multigrid preconditioner would remove that.)
  """
  if image.ndim != 3 or removed.shape != image.shape[:2]:
    raise BadInput(f'image must be (H, W, C) and removed (H, W), got {image.shape} and '
                   f'{removed.shape}')
  if iterations < 1 or not 0 < tolerance < 1:
    raise BadInput(f'iterations must be >= 1 and tolerance in (0, 1), got {iterations}, '
                   f'{tolerance}')
  hole = removed[..., None].astype(image.dtype)
  kept = image * (1 - hole)
  weight_sum = _neighbour_sum(jnp.ones_like(hole))
  inverse_diag = hole / weight_sum

  def matvec(x):
    return hole * (weight_sum * x - _neighbour_sum(hole * x))

  def dot(a, b):
    return jnp.sum(a * b, axis=(0, 1))

  x = hole * _safe_div(jnp.sum(kept, axis=(0, 1)), jnp.sum(1 - hole))
  b = hole * _neighbour_sum(kept)
  r = b - matvec(x)
  z = inverse_diag * r
  rz = dot(r, z)
  stop = dot(b, inverse_diag * b) * tolerance ** 2  # per channel

  def unfinished(carry):
    return (carry[4] < iterations) & jnp.any(carry[3] > stop)

  def step(carry):
    x, r, p, rz, k = carry
    ap = matvec(p)
    alpha = _safe_div(rz, dot(p, ap))
    r_next = r - alpha * ap
    z = inverse_diag * r_next
    rz_next = dot(r_next, z)
    return x + alpha * p, r_next, z + _safe_div(rz_next, rz) * p, rz_next, k + 1

  x, _, _, _, steps = jax.lax.while_loop(unfinished, step, (x, r, z, rz, jnp.int32(0)))
  return kept + hole * x, steps


def noisy_linear_imputation(image: jax.Array, removed: jax.Array, key: jax.Array, *,
                            noise_std, **solver) -> jax.Array:
  """ROAD's noisy linear imputation (Rong et al., ICML 2022): ``linear_imputation`` (its
  ``solver`` arguments), then Gaussian noise of ``noise_std`` (model-input units: a number or
  one per channel, ``model.normalisation.input_units(ROAD_PIXEL_NOISE)``) on the removed pixels.

  Measured against scipy's ``spsolve`` on 128 x 128 images (values spanning 4 model-input
  units) with 90% removed, float32: the default tolerance ends within 1.4e-4 of it (float32's
  floor there: more steps do not go below) in 420 steps when the kept 10% is a corner, 280 when
  it surrounds a central blob, and 50 when the removed pixels are scattered (1.4e-5 there); a
  tolerance of 1e-5 ends within 1.6e-4 in 380, 250 and 40 steps.
  """
  if np.any(np.asarray(noise_std) < 0):
    raise BadInput(f'noise_std must be >= 0, got {noise_std}')
  solved, _ = linear_imputation(image, removed, **solver)
  return _add_noise(solved, removed, key, noise_std)


def _add_noise(image, removed, key, noise_std):
  noise = jnp.asarray(noise_std, image.dtype) * jax.random.normal(key, image.shape, image.dtype)
  return jnp.where(removed[..., None], image + noise, image)


def road(predict: Predict, images: jax.Array, heat: jax.Array, targets: jax.Array,
         keys: jax.Array, *, fractions: Sequence[float] = ROAD_FRACTIONS,
         noise_std, iterations: int = CG_ITERATIONS,
         tolerance: float = CG_TOLERANCE) -> dict[str, jax.Array]:
  """ROAD with noisy linear imputation (Rong et al., ICML 2022), per image.

  For each fraction p, k = int(p * H * W) pixels (ROAD's reference rounding) are removed and
  imputed by ``noisy_linear_imputation``: the first k of the heat order (MoRF, most relevant
  first) or the last k (LeRF, least relevant first). The value is the mean
  ``target_probability`` over the fractions. Lower MoRF / higher LeRF = more faithful.
  ROAD's reference code breaks heat ties by a 1e-4 random jitter (here: by pixel index) and its
  LeRF at p removes the 1 - p least relevant; over fractions symmetric about 0.5 (the default)
  the mean is the same up to one pixel of rounding per fraction.

  ``keys``: one PRNG key per image (B,), folded with the fraction and order to draw that
  image's noise, so an image's value does not depend on the batch it comes in; ``noise_std``:
  see ``noisy_linear_imputation``.
  Returns ``{'road_morf': (B,), 'road_lerf': (B,)}``, in [0, 1].
  """
  targets = _check(images, heat, targets)
  if not fractions or not all(0 < p < 1 for p in fractions):
    raise BadInput(f'fractions must be a non-empty sequence in (0, 1), got {fractions}')
  b, h, w = heat.shape
  if keys.shape != (b,):
    raise BadInput(f'keys must hold one PRNG key per image, shape ({b},), got {keys.shape}')
  counts = [int(p * h * w) for p in fractions]
  ranks = _ranks(heat)
  num_logits = jax.eval_shape(predict, images).shape[-1]
  targets = jax.lax.cond(_asks_predicted(targets, num_logits),
                         lambda: _explicit_targets(predict(images), targets), lambda: targets)
  impute = jax.vmap(lambda x, r, k: noisy_linear_imputation(
      x, r, k, noise_std=noise_std, iterations=iterations, tolerance=tolerance))

  def score(case):
    index, lerf, count = case
    removed = jnp.where(lerf, ranks >= h * w - count, ranks < count)
    case_keys = jax.vmap(lambda k: jax.random.fold_in(k, index))(keys)
    return target_probability(predict(impute(images, removed, case_keys)), targets)

  n = len(fractions)
  cases = (jnp.arange(2 * n), jnp.arange(2 * n) >= n, jnp.array(counts * 2, jnp.int32))
  curves = jax.lax.map(score, cases)
  return {'road_morf': jnp.mean(curves[:n], axis=0), 'road_lerf': jnp.mean(curves[n:], axis=0)}
