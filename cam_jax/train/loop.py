"""The training loop: sharded steps over one grain iterator, checkpoints every N steps and at
each epoch end, validation each epoch, resumption, preemption, and the exported models.

A run in ``workdir`` writes ``train_state/`` (``cam_jax.train.checkpoints``), ``train_log.jsonl``
and ``tensorboard/`` (``cam_jax.train.observe``), and at the end ``checkpoint/`` (the best
weights by validation ROC-AUC, EMA's when it is on) and ``checkpoint_last/``, both loadable by
``cam_jax.models.checkpoint.load``. Every source of randomness is a function of the seed and the
step (data order and augmentation: grain, by position; the schedule: the optimiser step), so a
run killed at any step and started again ends with the weights of a run never interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import jax
import numpy as np
from flax import nnx

from cam_jax import data, models
from cam_jax.core import mesh as mesh_lib, processes
from cam_jax.core.errors import BadInput
from cam_jax.metrics import classification
from cam_jax.models import checkpoint, normalisation as normalisation_lib, weights
from cam_jax.models.normalisation import Normalisation
from cam_jax.train import checkpoints, observe, optim, step as step_lib
from cam_jax.train.preemption import Preempted, StopRequest

BEST, LAST, STATE = 'checkpoint', 'checkpoint_last', 'train_state'


class NonFiniteLoss(BadInput):
  """The loss or the gradient became NaN or infinite; nothing after the last good step is
  saved."""


@dataclasses.dataclass
class TrainResult:
  model: nnx.Module          # the best weights by validation ROC-AUC, eval-ready
  recipe: dict               # models.create arguments
  history: list[dict]        # one row per epoch
  best_epoch: int


def predict(model: nnx.Module, source, *, batch_size: int, mesh) -> tuple[np.ndarray, np.ndarray]:
  """(labels, P(positive)) for every record of ``source``, padded rows dropped."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = mesh_lib.replicate((params, rest), mesh)
  return _predict(graphdef, params, rest, source, batch_size, mesh, model.normalisation)


def _predict(graphdef, params, rest, source, batch_size, mesh, normalisation):
  """Each process feeds its share of every (padded) batch; every process gets all outputs."""
  fn = step_lib.make_predict(graphdef, mesh)
  labels, probs = [], []
  for batch in data.eval_batches(source, batch_size=batch_size, normalisation=normalisation):
    images = mesh_lib.shard_batch({'image': mesh_lib.local_rows(batch['image'])}, mesh)['image']
    p = mesh_lib.to_host(fn(params, rest, images))
    labels.append(batch['label'][batch['valid']])
    probs.append(p[batch['valid']])
  return np.concatenate(labels), np.concatenate(probs)


def initial_model(recipe: dict, init_from: str = '', log=print, dtype=None,
                  log_name: str = '') -> nnx.Module:
  """``models.create(**recipe)`` computing in ``dtype``, with pretrained weights from
  ``init_from`` when given (see ``cam_jax.models.weights.load_file``: torchvision / timm state
  dicts, big_vision .npz); ``log_name`` names it in the log (default: the recipe's model)."""
  model = models.create(**recipe, dtype=dtype)
  if not init_from:
    return model
  loaded = weights.load_file(model, init_from)
  kept = f'; fresh (class count differs): {", ".join(loaded.skipped)}' if loaded.skipped else ''
  log(f"[{log_name or recipe['name']}] initialised from {init_from}{kept}")
  return loaded.model


NORMALISATIONS = ('auto', 'dataset', 'imagenet')  # or 'MEAN,STD'


def named_normalisation(setting: str, in_channels: int, init_from: str = ''
                        ) -> tuple[Normalisation | None, str]:
  """(the normalisation ``train.normalisation`` names, None for the training split's own; why).

  'auto': ImageNet's when ``init_from`` starts from pretrained weights (the statistics those
  weights were trained with), else 'dataset'; 'dataset': per-channel mean and std of the
  training split's pixels (``data.pipeline.PixelStatistics``); 'imagenet':
  ``models.normalisation.imagenet``; 'MEAN,STD': on [0, 1] pixels, every channel (big_vision /
  AugReg ViT weights expect '0.5,0.5').
  """
  field = f'train.normalisation={setting!r}'
  if setting == 'auto':
    setting = 'imagenet' if init_from else 'dataset'
    field += ', pretrained init_from' if init_from else ', no init_from'
  if setting == 'dataset':
    return None, f"the training split's ({field})"
  if setting == 'imagenet':
    return normalisation_lib.imagenet(in_channels), f"ImageNet's ({field})"
  parts = setting.split(',')
  if len(parts) != 2:
    raise BadInput(f'{field}: choose one of {", ".join(NORMALISATIONS)} or MEAN,STD (two '
                   'numbers on [0, 1] pixels, e.g. 0.5,0.25)')
  return normalisation_lib.of(parts, in_channels, field), f'as given ({field})'


def _check_recipe(train_config, mesh) -> None:
  bs, accum = train_config.batch_size, train_config.accum_steps
  models.compute_dtype(train_config.dtype, 'train.dtype')
  if accum < 1 or bs % accum:
    raise BadInput(f'train.accum_steps {accum} must be a positive divisor of batch size {bs}')
  mesh_lib.check_batch_size(bs // accum, mesh)
  mesh_lib.check_batch_size(train_config.eval_batch_size, mesh)
  if (train_config.param_sharding == 'fsdp' and mesh.shape[mesh_lib.FSDP_AXIS] == 1
      and mesh.devices.size > 1):
    raise BadInput(f"train.param_sharding='fsdp' splits parameters over the mesh's fsdp axis, "
                   f'which has 1 of the {mesh.devices.size} devices; set train.fsdp_devices to '
                   '-1 (all) or a divisor of the device count')
  if not 0.0 <= train_config.ema_decay < 1.0:
    raise BadInput(f'train.ema_decay {train_config.ema_decay} must be in [0, 1)')


# Training fields that change how a run is watched, stored or laid out on the devices, not the
# weights it ends with (up to float summation order): a run may resume on another mesh.
_NOT_IN_SPEC = ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
                'eval_batch_size', 'param_sharding', 'fsdp_devices')


def run_spec(recipe: dict, train_config, train_ids: list[str], num_validation: int) -> dict:
  """What a run's checkpoints must agree with to be resumed: the model, the recipe, the data."""
  digest = hashlib.sha256('\n'.join(train_ids).encode()).hexdigest()[:16]
  recipe_fields = {k: v for k, v in train_config.to_dict().items() if k not in _NOT_IN_SPEC}
  return {'model': recipe, 'train': recipe_fields,
          'data': {'train_records': len(train_ids), 'train_ids_sha256': digest,
                   'validation_records': num_validation}}


def _read_labels(train_source, count_pixels: bool):
  """(labels, ids, ``PixelStatistics`` of the images when ``count_pixels``) in one pass, one
  decoded record in memory at a time."""
  labels, ids, pixels = [], [], data.pipeline.PixelStatistics()
  for i in range(len(train_source)):
    record = train_source[i]
    labels.append(record['label'])
    ids.append(str(data.pipeline.as_text(record['id'])))
    if count_pixels:
      pixels.add(record['image'], record['id'])
  return np.asarray(labels), ids, pixels


def train(recipe: dict, train_config, train_source, val_source, *, workdir: str,
          init_from: str = '', mesh=None, log=print, log_name: str = '') -> TrainResult:
  """Trains ``models.create(**recipe)`` (from ``init_from`` weights when given) in ``workdir``,
  resuming from its newest checkpoint; see the module docstring. ``log_name`` begins its log lines
  (default: the recipe's model name). Raises ``Preempted`` after saving when SIGTERM or SIGINT
  arrives, ``NonFiniteLoss`` when the loss diverges."""
  log_name = log_name or recipe['name']
  tc, mesh = train_config, mesh or mesh_lib.make_mesh(fsdp=train_config.fsdp_devices)
  _check_recipe(tc, mesh)
  in_channels = recipe.get('in_channels', 1)
  named, why = ((recipe['normalisation'], 'from the recipe') if 'normalisation' in recipe else
                named_normalisation(tc.normalisation, in_channels, init_from))
  labels, ids, pixels = _read_labels(train_source, count_pixels=named is None)
  recipe = {**recipe, 'normalisation': normalisation_lib.of(
      named or pixels.normalisation(), in_channels, 'normalisation').to_json()}
  eval_model = nnx.eval_shape(lambda: models.create(**recipe))
  log(f"[{log_name}] normalisation mean {_channels(eval_model.normalisation.mean)} std "
      f'{_channels(eval_model.normalisation.std)}: {why}')
  loss = step_lib.Loss(step_lib.ClassWeights.from_labels(labels, recipe['num_classes'],
                                                          tc.class_weighting),
                       tc.loss, tc.focal_gamma)
  steps_per_epoch = data.pipeline.steps_per_epoch(len(train_source), tc.batch_size)
  total = tc.epochs * steps_per_epoch
  # epochs = 0 exports the initial weights; the iterator is then never read.
  batches = iter(data.train_batches(train_source, batch_size=tc.batch_size, seed=tc.seed,
                                    normalisation=eval_model.normalisation,
                                    epochs=max(1, tc.epochs), process_index=jax.process_index(),
                                    process_count=jax.process_count(),
                                    augmenter=data.augment.named(tc.augment, hflip=tc.hflip)))
  tx = optim.optimizer(tc, total)
  model = initial_model(recipe, init_from, log, models.compute_dtype(tc.dtype, 'train.dtype'),
                        log_name)
  graphdef, state, shardings = step_lib.init_state(model, tx, mesh, tc.param_sharding,
                                                   ema=tc.ema_decay > 0)
  del model
  train_step = step_lib.make_train_step(graphdef, tx, loss, mesh, shardings,
                                        accum_steps=tc.accum_steps, ema_decay=tc.ema_decay)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          state, shardings)
  ckpts = checkpoints.TrainCheckpoints(os.path.join(workdir, STATE),
                                       run_spec(recipe, tc, ids, len(val_source)),
                                       keep=tc.keep_checkpoints, log=log)
  run = _Run(log_name, eval_model, tc, mesh, val_source, ckpts, batches, total,
             steps_per_epoch, log)
  try:
    restored = ckpts.restore_latest(abstract, batches)
    if restored is not None:
      state, meta, start = restored
      run.resume(meta)
      log(f"[{log_name}] resumed from step {start}/{total} in {ckpts.directory}")
    else:
      start = 0
    run.open_log(workdir, start)
    state = run.steps(state, train_step, start)
    ckpts.wait()
    best_step = ckpts.best_step()
    if best_step is None or best_step == total:  # no epoch (epochs = 0), or the last is best
      best, best_step = state, total
    else:
      best = ckpts.restore_state(best_step, abstract)
    exported = {}
    for name, s, at in ((BEST, best, best_step), (LAST, state, total)):
      params, rest = mesh_lib.to_host((_weights(s), s.rest))
      exported[name] = nnx.merge(run.eval_graphdef, params, rest)
      epoch = at // steps_per_epoch
      checkpoint.save(os.path.join(workdir, name), recipe, exported[name], about={
          'selected_by': 'best validation roc_auc' if name == BEST else 'last step',
          'step': at, 'epoch': epoch, 'weights': 'ema' if s.ema is not None else 'trained',
          'validation': run.history[epoch - 1] if epoch else None})
  finally:
    ckpts.wait()
    ckpts.close()
    run.close()
  best_epoch = best_step // steps_per_epoch
  log(f"[{log_name}] best validation roc_auc at epoch {best_epoch}: "
      f"{os.path.join(workdir, BEST)}")
  return TrainResult(model=exported[BEST], recipe=recipe, history=run.history,
                     best_epoch=best_epoch)


def _weights(state):
  """The weights a state is evaluated and exported with: the EMA's when there is one."""
  return state.ema if state.ema is not None else state.params


class _Run:
  """The bookkeeping of one training run between checkpoints: pending device metrics, the
  epoch's loss, timing, history."""

  def __init__(self, name, eval_model, tc, mesh, val_source, ckpts, batches, total,
               steps_per_epoch, log):
    self.tc, self.mesh, self.val_source = tc, mesh, val_source
    self.ckpts, self.batches, self.total, self.steps_per_epoch = ckpts, batches, total, \
        steps_per_epoch
    self.log, self.name = log, name
    self.schedule = optim.schedule(tc, total)
    self.history, self.epoch_loss = [], [0.0, 0]
    self.pending, self.run_log = [], None
    self.last_saved = None
    # Evaluation and export compute in float32, whatever the training dtype.
    self.eval_graphdef = nnx.split(eval_model, nnx.Param, ...)[0]
    self.normalisation = eval_model.normalisation

  def resume(self, meta: dict) -> None:
    self.history, self.epoch_loss = meta['history'], meta['epoch_loss']

  def open_log(self, workdir, start) -> None:
    self.run_log = observe.RunLog(workdir, self.name, self.total, start,
                                  enabled=processes.is_primary(), log=self.log)
    self.window_start, self.window_wait = time.perf_counter(), 0.0

  def close(self) -> None:
    if self.run_log is not None:
      self.run_log.close()

  def steps(self, state, train_step, start: int):
    every, log_every = self.tc.checkpoint_every_steps, max(1, self.tc.log_every_steps)
    with StopRequest(self.log) as stop:
      for step in range(start, self.total):
        t = time.perf_counter()
        batch = next(self.batches)
        self.window_wait += time.perf_counter() - t
        state, metrics = train_step(state, mesh_lib.shard_batch(batch, self.mesh))
        done = step + 1
        self.pending.append((done, metrics, batch['id']))
        epoch_end = done % self.steps_per_epoch == 0
        periodic = every > 0 and done % every == 0
        flush = epoch_end or periodic or done % log_every == 0 or done == self.total
        stopping = self._stopping(stop, flush)
        if flush or stopping:
          self._flush(done)
        save = epoch_end or periodic or stopping
        if epoch_end:
          row = self._evaluate(state, done)
          self._save(state, done, row['roc_auc'] if row['roc_auc'] is not None else -1.0)
        elif save:
          self._save(state, done)
        if stopping and done < self.total:
          self.ckpts.wait()
          by = stop.signal_name or 'a signal to another process'
          raise Preempted(f'[{self.name}] stopped by {by} at step {done}/{self.total}; '
                          f'checkpoint in {self.ckpts.directory}; the same '
                          'command resumes from there')
    return state

  @staticmethod
  def _stopping(stop, flush: bool) -> bool:
    """Whether to save and stop after this step. One process stops as soon as it is asked; the
    processes of a multi-process job agree at each flush (every ``log_every_steps`` steps and
    at every save), so they all stop at the same step, whichever of them got the signal."""
    if jax.process_count() == 1:
      return stop.requested
    return flush and processes.any_process(stop.requested)

  def _save(self, state, done, val_roc_auc=None) -> None:
    meta = {'history': self.history, 'epoch_loss': self.epoch_loss}
    self.ckpts.save(done, state, self.batches, meta, val_roc_auc)
    self.last_saved = done

  def _flush(self, done: int) -> None:
    """Pulls the pending steps' metrics (the one host round trip), stops on a non-finite one,
    and logs the steps and the window's throughput."""
    pending, self.pending = self.pending, []
    values = jax.device_get([m for _, m, _ in pending])
    rows = []
    for (step, _, ids), m in zip(pending, values):
      if not m['finite']:
        saved = (f'the last checkpoint, step {self.last_saved}, is in {self.ckpts.directory}'
                 if self.last_saved else 'no checkpoint was saved')
        raise NonFiniteLoss(
            f"[{self.name}] loss {float(m['loss'])} (gradient norm {float(m['grad_norm'])}) at "
            f"step {step}, batch of images {', '.join(str(i) for i in ids)}; {saved}; lower "
            'train.learning_rate or check those images')
      rows.append({'step': step, 'loss': float(m['loss']), 'grad_norm': float(m['grad_norm']),
                   'learning_rate': float(self.schedule(step - 1))})
      self.epoch_loss = [self.epoch_loss[0] + float(m['loss']), self.epoch_loss[1] + 1]
    self.run_log.steps(rows)
    wall = time.perf_counter() - self.window_start
    self.run_log.window({
        'step': done, 'total_steps': self.total, 'loss': rows[-1]['loss'],
        'images_per_s': len(rows) * self.tc.batch_size / wall, 'step_time_s': wall / len(rows),
        'input_wait_fraction': min(1.0, self.window_wait / wall)})
    self.window_start, self.window_wait = time.perf_counter(), 0.0

  def _evaluate(self, state, done: int) -> dict:
    """Validation metrics at an epoch's end, sensitivity and specificity at the Youden
    threshold chosen on validation; one history row."""
    t0 = time.perf_counter()
    epoch = done // self.steps_per_epoch
    y, p = _predict(self.eval_graphdef, _weights(state), state.rest, self.val_source,
                    self.tc.eval_batch_size, self.mesh, self.normalisation)
    threshold = classification.youden_threshold(y, p)
    metrics = classification.classification_metrics(y, p, threshold)
    row = {'epoch': epoch, 'step': done,
           'loss': self.epoch_loss[0] / max(1, self.epoch_loss[1]),
           **{k: metrics[k] for k in classification.CLASSIFICATION_METRICS},
           'threshold': threshold, 'eval_seconds': round(time.perf_counter() - t0, 2)}
    self.history.append(row)
    self.epoch_loss = [0.0, 0]
    self.run_log.epoch(row, f"[{self.name}] epoch {epoch}/{self.tc.epochs} loss "
                            f"{row['loss']:.4f} val acc {row['accuracy']:.3f} roc_auc "
                            f"{_fmt(row['roc_auc'])} sens/spec {_fmt(row['sensitivity'])}/"
                            f"{_fmt(row['specificity'])} at {threshold:.3f}")
    self.window_start = time.perf_counter()  # evaluation is not training throughput
    return row


def _channels(values) -> str:
  return ', '.join(f'{v:.4f}' for v in values)


def _fmt(x):
  return 'n/a' if x is None else f'{x:.3f}'
