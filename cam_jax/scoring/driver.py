"""Whole-data-set scoring: per batch, the CAM, its postprocessing and ROAD in one jitted program
of the model (``make_score_step``), then the localisation metrics in one shared by every model
(``localisation_batch``); deletion / insertion in a third, on the positive images alone
(``make_rise_step``).

The maps stay on the device: only per-image numbers leave it, and host memory holds the
records, never the maps.
``score`` is the public entry point (``cam_jax.score``); ``random_baseline`` scores random heat
maps the same way, the floor a CAM has to beat.

Metric groups (``metrics=``): ``'localisation'`` (every metric of
``scoring.localisation.localisation_metrics``, against the lesion mask), ``'deletion_insertion'``
(RISE, scored on the positive images, label 1, only: they are repacked into batches of their
own; two targets, the positive finding and the predicted one, each with its own heat map:
2 CAMs and 2 x 2 x (n_steps + 1) forward passes per positive image)
and ``'road'`` (ROAD, 2 x len(fractions) extra forward passes); see ``metrics.faithfulness``.

Deletion / insertion columns: ``deletion_auc``, ``insertion_auc`` (target +1) and
``deletion_auc_predicted``, ``insertion_auc_predicted`` (the predicted finding), and the +1
curves' points ``deletion@i``, ``insertion@i`` (fraction i / n_steps of the pixels removed or
inserted), NaN on images whose label is not 1: a healthy image has no finding whose evidence
could be removed. ``fill`` says what removed pixels become (``faithfulness.DELETION_FILLS``);
'reference' and 'texture' use each image's nearest healthy image of ``fill_from``
(``faithfulness.nearest_reference``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx
from tqdm import tqdm

from cam_jax import cams, data
from cam_jax.analysis import summary as summary_lib
from cam_jax.core import flags as flags_lib, mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.metrics import faithfulness, localisation
from cam_jax.models import checkpoint, normalisation
from cam_jax.models.head import positive_probability

LOCALISATION, DELETION_INSERTION, ROAD = 'localisation', 'deletion_insertion', 'road'
METRIC_GROUPS = (LOCALISATION, DELETION_INSERTION, ROAD)
DEFAULT_METRICS = (LOCALISATION,)
GRIDS = {'iou_grid': 'iou', 'dice_grid': 'dice'}  # per-threshold vectors -> columns iou@0.05, ...
CURVES = {'deletion_curve': 'deletion', 'insertion_curve': 'insertion'}  # -> deletion@0, ...


_COLUMN_ORDER = ('id', 'label', 'has_mask', 'prob', *summary_lib.LOCALISATION_METRICS,
                 'otsu_threshold', 'mask_fraction', *summary_lib.FAITHFULNESS_METRICS)


@dataclasses.dataclass
class ScoreResult:
  """Per-image records; the summary tables are computed from them when first read."""
  records: pd.DataFrame   # one row per image: id, label, has_mask, prob, metrics, flags
  n_resamples: int = 2000
  seed: int = 0
  tuned_threshold: float | None = None

  @functools.cached_property
  def summary(self) -> pd.DataFrame:
    """One row per metric: value with a bootstrap 95% CI (``summary.summarise``)."""
    return summary_lib.summarise(self.records, n_resamples=self.n_resamples, seed=self.seed,
                                 tuned_threshold=self.tuned_threshold)

  @functools.cached_property
  def by_size(self) -> pd.DataFrame:
    """Localisation metrics per lesion-size tercile, with CIs (``summary.by_lesion_size``)."""
    return summary_lib.by_lesion_size(self.records, n_resamples=self.n_resamples,
                                      seed=self.seed)


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
  metrics = tuple(metrics)
  unknown = [m for m in metrics if m not in METRIC_GROUPS]
  if unknown:
    raise BadInput(f'unknown metric group(s) {", ".join(map(repr, unknown))}; choose from: '
                   + ', '.join(METRIC_GROUPS))
  return metrics


@functools.partial(jax.jit, static_argnames=('top_k', 'parts'))
def localisation_batch(heat, masks, flags, top_k: int | None = None, parts: int = 1):
  """Every localisation metric of a batch of heat maps, ``flags`` or'ed with the metrics' own.

  A program of its own, not part of a model's: it is compiled once per batch shape and shared
  by every model and method scored in a process (a study's 18 models; about 4 s of compile at
  64 x 64 px on CPU), and the maps stay on the device between the two. Vmapped over ``parts``
  independent slices of the batch: on a one-device CPU mesh, XLA sorts one vmapped batch on a
  single thread, while independent slices run on concurrent threads (two slices: 54 -> 42 ms for
  64 maps of 128 px, 2 cores)."""
  metrics = jax.vmap(lambda h, m: localisation.localisation_metrics(h, m, top_k=top_k))
  slices = [metrics(h, m) for h, m in zip(jnp.split(heat, parts), jnp.split(masks, parts))]
  out = jax.tree.map(lambda *x: jnp.concatenate(x), *slices)
  out['flags'] = out['flags'] | flags
  return out


def curve_column(prefix: str, step: int) -> str:
  """The records column of point ``step`` of the +1 target's 'deletion' or 'insertion' curve."""
  return f'{prefix}@{step}'


def negatives(source) -> list[dict]:
  """The records of a random-access ``source`` with label 0 (healthy), in order."""
  if not (hasattr(source, '__getitem__') and hasattr(source, '__len__')):
    raise BadInput('healthy images are read from a random-access data set (a split), not from '
                   'an iterable of batches')
  return [r for r in (source[i] for i in range(len(source))) if int(r['label']) == 0]


def reference_pool(source, normalisation) -> np.ndarray:
  """(N, H, W, C) model-input images (``normalisation``: the model's) of the healthy (label 0)
  records of ``source``: the pool the 'reference' and 'texture' fills draw from."""
  healthy = negatives(source)
  if not healthy:
    raise BadInput(f'fill_from has no healthy (label 0) record among its {len(source)}: the '
                   "'reference' fill takes removed pixels from one")
  return np.stack([normalisation.normalise(r['image']) for r in healthy])


def check_fill(fill: str, fill_from) -> str:
  """``fill`` (one of ``faithfulness.DELETION_FILLS``) after checking it has what it needs."""
  faithfulness.check_fill(fill)
  if (fill in faithfulness.NEEDS_REFERENCE) != (fill_from is not None):
    raise BadInput(f'fills {" and ".join(map(repr, faithfulness.NEEDS_REFERENCE))} need '
                   'fill_from, a data set (e.g. the validation split) whose healthy images are '
                   f'the references, and other fills take none; got fill {fill!r} with fill_from '
                   f'{"set" if fill_from is not None else "None"}')
  return fill


def image_keys(seed: int, mesh) -> Callable[[int, int], jax.Array]:
  """``keys(i, n)``: one PRNG key per image of batch ``i`` of ``n`` images, from its position in
  the stream and ``seed``, sharded like a batch."""
  key = jax.random.key(seed)
  fn = jax.jit(jax.vmap(lambda i: jax.random.fold_in(key, i)),
               out_shardings=mesh_lib.data_sharded(mesh))
  return lambda i, n: fn(jnp.arange(i * n, (i + 1) * n))


def _slices(mesh, batch_size: int | None) -> int:
  """2 on a single CPU device when the batch splits evenly, else 1 (see ``localisation_batch``)."""
  one_cpu = mesh.devices.size == 1 and mesh.devices.flat[0].platform == 'cpu'
  return 2 if one_cpu and batch_size and batch_size % 2 == 0 else 1


def make_score_step(model: nnx.Module, method: str, layer: str | None, mesh, *,
                    metrics: Sequence[str] = DEFAULT_METRICS, top_k: int | None = None,
                    road_fractions: Sequence[float] | None = None,
                    batch_size: int | None = None, **cam_options):
  """(``step(state, images, masks, targets, keys) -> per-image dict``, state, layer): the
  metrics every image gets, the localisation metrics and ROAD among ``metrics``
  (deletion / insertion: ``make_rise_step``).

  ``cam_options`` go to ``cams.heat_function`` (aug_smooth, eigen_smooth, chunk). ROAD
  explains the same targets with the model's probability (``faithfulness``).
  """
  metrics = check_metrics(metrics)
  heat_fn, model_state, layer = cams.heat_function(model, method, layer, **cam_options)
  graphdef = nnx.graphdef(model)
  road_kw = {} if road_fractions is None else {'fractions': tuple(road_fractions)}
  road_kw['noise_std'] = model.normalisation.input_units(faithfulness.ROAD_PIXEL_NOISE)
  parts = _slices(mesh, batch_size)

  def step(state, images, targets, keys):
    heat, flags, logits = heat_fn(state, images, targets)
    out = {'prob': positive_probability(logits), 'flags': flags}
    if LOCALISATION in metrics:
      out['heat'] = heat
    if ROAD in metrics:
      predict = lambda x: nnx.merge(graphdef, state)(x, train=False)
      out.update(faithfulness.road(predict, images, heat, targets, keys, **road_kw))
    return out

  cam_step = mesh_lib.jit_on_mesh(step, mesh, replicated_args=1, sharded_args=3)

  def fn(state, images, masks, targets, keys):
    out = cam_step(state, images, targets, keys)
    if LOCALISATION in metrics:
      out.update(localisation_batch(out.pop('heat'), masks, out['flags'], top_k, parts))
    return out

  return fn, mesh_lib.replicate(model_state, mesh), layer


def make_rise_step(model: nnx.Module, method: str, layer: str | None, mesh, *,
                   deletion_steps: int = 16, fill: str = 'rise',
                   fill_pool: np.ndarray | None = None, **cam_options):
  """(jitted ``step(state, images) -> per-image dict``, state): deletion / insertion
  (``faithfulness.deletion_insertion``) for target +1 and for the predicted finding, each with
  the heat map of that target, filled by ``fill`` (``fill_pool``: the ``reference_pool`` of
  'reference' and 'texture'). ``record_stream`` feeds it the positive images only."""
  check_fill(fill, fill_pool)
  heat_fn, model_state, _ = cams.heat_function(model, method, layer, **cam_options)
  graphdef = nnx.graphdef(model)

  def step(replicated, images):
    state, pool = replicated['model'], replicated['pool']
    predict = lambda x: nnx.merge(graphdef, state)(x, train=False)
    reference = None if pool is None else faithfulness.nearest_reference(images, pool)
    positive = jnp.ones(images.shape[:1], jnp.int32)
    heat, _, logits = heat_fn(state, images, positive)
    predicted = jnp.full_like(positive, cams.predicted_target(logits.shape[-1]))
    out = {}
    for suffix, wanted, wanted_heat in (('', positive, heat), (
        '_predicted', predicted, heat_fn(state, images, predicted)[0])):
      rise = faithfulness.deletion_insertion(predict, images, wanted_heat, wanted,
                                             n_steps=deletion_steps, fill=fill,
                                             reference=reference)
      out.update({f'{k}{suffix}': v for k, v in rise.items() if suffix == '' or k not in CURVES})
    return out

  replicated = {'model': model_state, 'pool': None if fill_pool is None else jnp.asarray(fill_pool)}
  return (mesh_lib.jit_on_mesh(step, mesh, replicated_args=1, sharded_args=1),
          mesh_lib.replicate(replicated, mesh))


def as_batches(dataset, batch_size: int, normalisation) -> Iterable[dict]:
  """Eval batches of a random-access source (``data.eval_batches`` with ``normalisation``, the
  model's); an iterable of batches as it is."""
  if hasattr(dataset, '__getitem__') and hasattr(dataset, '__len__'):
    return data.eval_batches(dataset, batch_size=batch_size, normalisation=normalisation)
  return dataset


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
  """``_COLUMN_ORDER`` first, then the other columns by name (curve and grid points in order of
  their point), ``flags`` last."""
  first = [c for c in _COLUMN_ORDER if c in frame]
  point = lambda c: (c.split('@')[0], float(c.split('@')[1]) if '@' in c else -1.0)
  rest = sorted((c for c in frame if c not in first and c != 'flags'), key=point)
  return frame[first + rest + ['flags']]


def _frame(batch: dict, out: dict, mask_keys: frozenset) -> pd.DataFrame:
  """The valid rows of one batch as records; mask metrics are NaN where there is no lesion."""
  valid = np.asarray(batch['valid'], bool)
  has_mask = np.asarray(batch['mask']).reshape(len(valid), -1).any(axis=1)
  label = np.asarray(batch['label']).astype(int)
  columns = {'id': np.asarray(batch['id']).astype(str), 'label': label, 'has_mask': has_mask}
  for key, value in out.items():
    value = np.asarray(value)
    if key == 'flags':
      continue
    if key in GRIDS:
      for j, t in enumerate(localisation.THRESHOLDS):
        columns[summary_lib.grid_column(GRIDS[key], t)] = np.where(has_mask, value[:, j], np.nan)
    elif key in mask_keys:
      columns[key] = np.where(has_mask, value.astype(np.float64), np.nan)
    else:
      columns[key] = value.astype(np.float64)
  columns['flags'] = [flags_lib.flag_names(int(f)) for f in np.asarray(out['flags'])]
  return _ordered(pd.DataFrame(columns)[valid])


class _Positives:
  """Deletion / insertion of the valid label-1 rows of streamed eval batches, repacked into
  batches of ``batch_size`` (the last one padded): healthy images, which get no such numbers,
  cost nothing. ``add`` each batch as it streams, then ``into(records)``."""

  def __init__(self, step, state, batch_size: int, mesh):
    self.step, self.state, self.batch_size, self.mesh = step, state, batch_size, mesh
    self.waiting, self.outs, self.image = [], [], None

  def add(self, batch: dict) -> None:
    images = np.asarray(batch['image'])
    self.image = jax.ShapeDtypeStruct((self.batch_size, *images.shape[1:]), images.dtype)
    keep = np.asarray(batch['valid'], bool) & (np.asarray(batch['label']).astype(int) == 1)
    self.waiting += list(images[keep])
    while len(self.waiting) >= self.batch_size:
      self._run()

  def _run(self):
    rows, self.waiting = self.waiting[:self.batch_size], self.waiting[self.batch_size:]
    images = np.zeros((self.batch_size, *rows[0].shape), rows[0].dtype)
    images[:len(rows)] = rows
    sharded = mesh_lib.shard_batch({'image': mesh_lib.local_rows(images)}, self.mesh)['image']
    out = mesh_lib.to_host(self.step(self.state, sharded))
    self.outs.append({k: np.asarray(v)[:len(rows)] for k, v in out.items()})

  def into(self, records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with the deletion / insertion columns, NaN on rows whose label is not 1."""
    if self.waiting:
      self._run()
    if not self.outs:  # no positive image: the step's columns, empty
      shapes = jax.eval_shape(self.step, self.state, self.image)
      self.outs.append({k: np.zeros((0, *v.shape[1:])) for k, v in shapes.items()})
    positive = (records['label'] == 1).to_numpy()
    columns = {}
    for key in self.outs[0]:
      value = np.concatenate([o[key] for o in self.outs]).astype(np.float64)
      if len(value) != positive.sum():
        raise AssertionError(f'{len(value)} deletion rows for {positive.sum()} positive records')
      parts = ({curve_column(CURVES[key], j): value[:, j] for j in range(value.shape[1])}
               if key in CURVES else {key: value})
      for name, part in parts.items():
        columns[name] = np.full(len(records), np.nan)
        columns[name][positive] = part
    return _ordered(pd.concat([records, pd.DataFrame(columns, index=records.index)], axis=1))


def stream_frames(batches: Iterable[dict], device_fn: Callable, mesh, *, progress: bool,
                  desc: str, to_frame: Callable[[dict, dict], pd.DataFrame],
                  keys: Sequence[str] = ('image', 'mask'),
                  each: Callable[[dict], None] | None = None) -> pd.DataFrame:
  """Streams eval ``batches`` through ``device_fn(i, *batch[keys])`` (default: images, masks;
  sharded on ``mesh``) and concatenates ``to_frame(batch, per-image numbers on the host)``, with
  a progress bar; ``each(batch)`` is called on every batch too. One batch ahead: batch i + 1 is
  dispatched before batch i's numbers are fetched, so the host's work (reading the next batch,
  building the frame) overlaps the device's. In a multi-process job every process reads every
  batch, feeds its own rows and gets all numbers back."""
  frames, pending = [], None
  for i, batch in enumerate(tqdm(batches, desc=desc, disable=not progress, unit='batch')):
    sharded = mesh_lib.shard_batch({k: mesh_lib.local_rows(batch[k]) for k in keys}, mesh)
    out = device_fn(i, *(sharded[k] for k in keys))
    if each is not None:
      each(batch)
    if pending is not None:
      frames.append(to_frame(pending[0], mesh_lib.to_host(pending[1])))
    pending = batch, out
  if pending is not None:
    frames.append(to_frame(pending[0], mesh_lib.to_host(pending[1])))
  if not frames:
    raise BadInput('the data set yielded no batches: nothing to score')
  return pd.concat(frames, ignore_index=True)


def _mask_keys() -> frozenset:
  shapes = jax.eval_shape(localisation.localisation_metrics,
                          jax.ShapeDtypeStruct((8, 8), jnp.float32),
                          jax.ShapeDtypeStruct((8, 8), jnp.bool_))
  return frozenset(k for k in shapes if k != 'flags')


def record_stream(model: nnx.Module, *, method: str = 'gradcam', layer: str | None = None,
                  target: int = 1, metrics: Sequence[str] = DEFAULT_METRICS,
                  batch_size: int = 64, mesh=None, seed: int = 0, top_k: int | None = None,
                  deletion_steps: int = 16, road_fractions: Sequence[float] | None = None,
                  fill: str = 'rise', fill_from=None,
                  **cam_options) -> Callable[..., pd.DataFrame]:
  """``stream(dataset, progress=False) -> records``: the per-image records of ``score``, from a
  step compiled once and reused for every data set streamed (arguments as in ``score``)."""
  metrics = check_metrics(metrics)
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  check_fill(fill, fill_from)
  pool = reference_pool(fill_from, model.normalisation) if fill_from is not None else None
  fn, state, _ = make_score_step(model, method, layer, mesh, metrics=metrics, top_k=top_k,
                                 road_fractions=road_fractions, batch_size=batch_size,
                                 **cam_options)
  rise = (make_rise_step(model, method, layer, mesh, deletion_steps=deletion_steps, fill=fill,
                         fill_pool=pool, **cam_options)
          if DELETION_INSERTION in metrics else None)
  keys_of = image_keys(seed, mesh)
  mask_keys = _mask_keys()

  def device_fn(i, images, masks):
    n = images.shape[0]
    targets = mesh_lib.same_targets(target, n, mesh)
    # ROAD's noise: one key per image from its position in the stream, whatever the batch size
    return fn(state, images, masks, targets, keys_of(i, n))

  def stream(dataset, progress: bool = False) -> pd.DataFrame:
    positives = None if rise is None else _Positives(*rise, batch_size, mesh)
    records = stream_frames(as_batches(dataset, batch_size, model.normalisation), device_fn,
                            mesh, progress=progress, desc=f'score {method}',
                            to_frame=functools.partial(_frame, mask_keys=mask_keys),
                            each=None if positives is None else positives.add)
    return records if positives is None else positives.into(records)

  return stream


def _threshold(tuned_threshold: float | None, tune_on, records_of: Callable) -> float | None:
  """``tuned_threshold`` as given, or tuned on the lesion images of ``tune_on`` from their
  localisation records ``records_of(tune_on)`` (CheXlocalize's validation-tuned threshold)."""
  if tune_on is None:
    return summary_lib.check_threshold(tuned_threshold)
  if tuned_threshold is not None:
    raise BadInput('give tuned_threshold or tune_on, not both')
  return summary_lib.tune_threshold(records_of(tune_on))


def score(model, dataset, *, method: str = 'gradcam', layer: str | None = None,
          target: int = 1, metrics: Sequence[str] = DEFAULT_METRICS, batch_size: int = 64,
          mesh=None, progress: bool = True, n_resamples: int = 2000, seed: int = 0,
          tuned_threshold: float | None = None, tune_on=None, top_k: int | None = None,
          deletion_steps: int = 16, road_fractions: Sequence[float] | None = None,
          fill: str = 'rise', fill_from=None, **cam_options) -> ScoreResult:
  """Scores ``method`` heat maps of ``model`` on ``dataset`` in one streaming pass.

  ``model``: an ``nnx.Module`` with weights or a checkpoint directory. ``dataset``: a
  random-access source of records (``image`` uint8, ``mask``, ``label``, ``id``) or an iterable
  of batches shaped like ``cam_jax.data.eval_batches``; a source is normalised with
  ``model.normalisation`` (batches must be already), and ROAD's noise is 0.01 on [0, 1] pixels
  under it. ``target``: the explained sign or class for every image (``cams.PREDICTED`` for
  the prediction). ``metrics``: metric groups (see the module docstring). Images without a
  lesion get no localisation numbers (NaN).
  ``tuned_threshold``: a threshold from ``localisation.THRESHOLDS`` chosen on validation
  (``summary.tune_threshold``), reported as ``iou_tuned`` / ``dice_tuned``; or ``tune_on``: a
  data set (e.g. the validation split) whose lesion images choose it first, in a pass with the
  localisation metrics alone. ``top_k``: k of the top-k intersection. ``deletion_steps``,
  ``road_fractions``: see ``metrics.faithfulness``. ``fill``: what deletion / insertion put
  in place of removed pixels (``faithfulness.DELETION_FILLS``; default 'rise', RISE's mean and
  blur); 'reference' and 'texture' (``faithfulness.fill_values``) take them from the nearest
  healthy image of ``fill_from`` (a random-access data set other than ``dataset``, e.g. the
  validation split). ``cam_options``: ``aug_smooth``,
  ``eigen_smooth``, ``chunk`` (see ``cams.heat_function``).
  """
  model, _ = checkpoint.model_and_recipe(model)
  common = dict(method=method, layer=layer, target=target, batch_size=batch_size, mesh=mesh,
                seed=seed, top_k=top_k, **cam_options)
  tuned_threshold = _threshold(
      tuned_threshold, tune_on,
      lambda tune: record_stream(model, metrics=(LOCALISATION,), **common)(tune, progress))
  stream = record_stream(model, metrics=metrics, deletion_steps=deletion_steps,
                         road_fractions=road_fractions, fill=fill, fill_from=fill_from, **common)
  return ScoreResult(stream(dataset, progress), n_resamples, seed, tuned_threshold)


def random_baseline(dataset, *, grid: int = 8, batch_size: int = 64, mesh=None,
                    progress: bool = True, n_resamples: int = 2000, seed: int = 0,
                    tuned_threshold: float | None = None, tune_on=None,
                    top_k: int | None = None) -> ScoreResult:
  """Uniform random maps on a ``grid`` x ``grid`` lattice, postprocessed and scored like a CAM
  (localisation metrics only: a random map has no model to be faithful to); ``tune_on`` as in
  ``score``."""
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  key = jax.random.key(seed)
  parts = _slices(mesh, batch_size)

  def random_maps(key, masks):
    raw = jax.random.uniform(key, (masks.shape[0], grid, grid))
    return cams.postprocess(raw, masks.shape[1:3])

  # sharded like a CAM step's maps, so that the metrics program compiled for them is reused
  random_maps = mesh_lib.jit_on_mesh(random_maps, mesh, replicated_args=1, sharded_args=1)

  def device_fn(i, images, masks):
    del images
    heat, flags = random_maps(jax.random.fold_in(key, i), masks)
    return localisation_batch(heat, masks, flags, top_k, parts)

  def records_of(source):
    # the images are not read: any normalisation will do
    return stream_frames(as_batches(source, batch_size, normalisation.legacy()), device_fn, mesh,
                         progress=progress, desc='random', to_frame=functools.partial(_frame,
                                                                   mask_keys=_mask_keys()))

  tuned_threshold = _threshold(tuned_threshold, tune_on, records_of)
  return ScoreResult(records_of(dataset), n_resamples, seed, tuned_threshold)
