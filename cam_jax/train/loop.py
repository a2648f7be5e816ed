"""The training loop: sharded steps over grain batches, validation each epoch, a final
checkpoint."""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np
import optax
from flax import nnx

from cam_jax import data, models
from cam_jax.core import mesh as mesh_lib
from cam_jax.metrics import classification
from cam_jax.models import checkpoint, weights
from cam_jax.train import step as step_lib


@dataclasses.dataclass
class TrainResult:
  model: nnx.Module          # trained weights, eval-ready
  recipe: dict               # models.create arguments
  history: list[dict]        # one row per epoch


def optimizer(train_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """AdamW with linear warmup and cosine decay (Loshchilov & Hutter, ICLR 2019 / 2017)."""
  total = max(1, train_config.epochs * steps_per_epoch)
  warmup = min(total - 1, int(train_config.warmup_epochs * steps_per_epoch))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, train_config.learning_rate, warmup, total, end_value=0.01 * train_config.learning_rate)
  return optax.adamw(schedule, weight_decay=train_config.weight_decay)


def predict(model: nnx.Module, source, *, batch_size: int, mesh) -> tuple[np.ndarray, np.ndarray]:
  """(labels, P(positive)) for every record of ``source``, padded rows dropped."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  fn = step_lib.make_predict(graphdef, mesh)
  params, rest = jax.device_put((params, rest), mesh_lib.replicated(mesh))
  labels, probs = [], []
  for batch in data.eval_batches(source, batch_size=batch_size):
    p = np.asarray(fn(params, rest, mesh_lib.shard_batch({'image': batch['image']}, mesh)['image']))
    labels.append(batch['label'][batch['valid']])
    probs.append(p[batch['valid']])
  return np.concatenate(labels), np.concatenate(probs)


def initial_model(recipe: dict, init_from: str = '', log=print) -> nnx.Module:
  """``models.create(**recipe)``, with pretrained weights from ``init_from`` when given (see
  ``cam_jax.models.weights.load_file``: torchvision / timm state dicts, big_vision .npz)."""
  model = models.create(**recipe)
  if not init_from:
    return model
  loaded = weights.load_file(model, init_from)
  kept = f'; fresh (class count differs): {", ".join(loaded.skipped)}' if loaded.skipped else ''
  log(f"[{recipe['name']}] initialised from {init_from}{kept}")
  return loaded.model


def train(recipe: dict, train_config, train_source, val_source, *, init_from: str = '',
          workdir: str | None = None, mesh=None, log=print) -> TrainResult:
  """Trains ``models.create(**recipe)`` (from ``init_from`` weights when given); saves a
  checkpoint to ``workdir`` when given."""
  mesh = mesh or mesh_lib.make_mesh()
  bs = train_config.batch_size
  mesh_lib.check_batch_size(bs, mesh)
  model = initial_model(recipe, init_from, log)
  labels = np.asarray([train_source[i]['label'] for i in range(len(train_source))])
  class_weights = step_lib.ClassWeights.from_labels(labels, recipe['num_classes'],
                                              train_config.class_weighting)
  steps_per_epoch = len(train_source) // bs
  tx = optimizer(train_config, steps_per_epoch)
  graphdef, state, shardings = step_lib.init_state(model, tx, mesh, train_config.param_sharding)
  train_step = step_lib.make_train_step(graphdef, tx, class_weights, mesh, shardings)
  history = []
  for epoch in range(train_config.epochs):
    t0, losses = time.time(), []
    for batch in data.train_batches(train_source, batch_size=bs, seed=train_config.seed,
                                    epoch=epoch):
      state, metrics = train_step(state, mesh_lib.shard_batch(batch, mesh))
      losses.append(metrics['loss'])
    model = nnx.merge(graphdef, state.params, state.rest)
    y, p = predict(model, val_source, batch_size=train_config.eval_batch_size, mesh=mesh)
    row = {'epoch': epoch + 1, 'loss': float(np.mean(jax.device_get(losses))),
           **{k: v for k, v in classification.classification_metrics(y, p).items()
              if k in ('accuracy', 'roc_auc')},
           'seconds': round(time.time() - t0, 1)}
    history.append(row)
    log(f"[{recipe['name']}] epoch {row['epoch']}/{train_config.epochs} loss {row['loss']:.4f} "
        f"val acc {row['accuracy']:.3f} val roc_auc {_fmt(row['roc_auc'])} ({row['seconds']} s)")
  model = nnx.merge(graphdef, jax.device_get(state.params), jax.device_get(state.rest))
  if workdir:
    checkpoint.save(os.path.join(workdir, 'checkpoint'), recipe, model)
  return TrainResult(model=model, recipe=recipe, history=history)


def _fmt(x):
  return 'n/a' if x is None else f'{x:.3f}'
