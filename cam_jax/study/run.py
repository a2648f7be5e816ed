"""The study: train each model, score its CAMs on the test split, write records and a report.

Resumable per cell: a model whose checkpoint exists is not retrained, and one whose records
exist is not rescored. A workdir belongs to one config; reusing it with another is an error.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cam_jax import cams, data, models, report
from cam_jax.scoring import driver, summary
from cam_jax.train import checkpoint, loop, mesh as mesh_lib


def model_names(config) -> list[str]:
  """The study's models, each checked against the registry."""
  names = [n.strip() for n in config.models.split(',') if n.strip()]
  if not names:
    raise ValueError('config.models is empty; give a comma-separated list of ' +
                     ', '.join(models.names()))
  for n in names:
    models.check_name(n)
  return names


def init_paths(config, names: list[str]) -> dict[str, str]:
  """``config.init_from`` ('name=path,...') as a dict, each name one of the study's models."""
  paths = {}
  for item in filter(None, (i.strip() for i in config.init_from.split(','))):
    name, sep, path = item.partition('=')
    if not sep or name.strip() not in names:
      raise ValueError(f'config.init_from item {item!r} is not <model>=<path> with <model> one '
                       f'of: {", ".join(names)}')
    paths[name.strip()] = path.strip()
  return paths


def _claim_workdir(workdir: str, config) -> None:
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'config.json')
  mine = json.loads(config.to_json())
  if os.path.exists(path):
    with open(path) as f:
      theirs = json.load(f)
    if theirs != mine:
      raise ValueError(f'{workdir} holds a study run with another config ({path}); '
                       'use a new --workdir or delete it')
  with open(path, 'w') as f:
    json.dump(mine, f, indent=1, sort_keys=True)


def _train_or_load(name, config, cell, train_src, val_src, mesh, log, init_from):
  ckpt = os.path.join(cell, 'checkpoint')
  if checkpoint.exists(ckpt):
    log(f'[{name}] checkpoint found, not retraining: {ckpt}')
    return checkpoint.load(ckpt)[0]
  recipe = loop.recipe(name, config.num_classes, config.data.image_size, config.train.seed)
  train_config = config.train.copy_and_resolve_references()
  train_config.update(config.train_overrides.get(name, {}))
  result = loop.train(recipe, train_config, train_src, val_src, workdir=cell, mesh=mesh, log=log,
                      init_from=init_from)
  pd.DataFrame(result.history).to_csv(os.path.join(cell, 'history.csv'), index=False)
  return result.model


def _overlays(workdir, trained, test_src, config, mesh):
  """Heat maps of a few positive test images for every model, drawn to ``overlays.png``."""
  picks = [i for i in range(len(test_src)) if test_src[i]['label'] == 1]
  picks = picks[:config.score.overlay_count]
  if not picks:
    return
  recs = [test_src[i] for i in picks]
  images = np.stack([data.normalise(r['image']) for r in recs])
  heatmaps = {}
  for name, model in trained.items():
    fn, state, _ = cams.heat_function(model, config.cam.method, config.cam.layer or None,
                                      aug_smooth=config.cam.aug_smooth,
                                      eigen_smooth=config.cam.eigen_smooth)
    heatmaps[name] = np.asarray(fn(state, jnp.asarray(images),
                                   jnp.full((len(picks),), config.cam.target))[0])
  report.figures.overlay_grid(data.denormalise(images)[..., 0],
                              np.stack([r['mask'] for r in recs]), heatmaps,
                              [str(data.pipeline.as_text(r['id'])) for r in recs],
                              os.path.join(workdir, report.OVERLAYS))


def run_study(config, workdir: str, *, log=print) -> pd.DataFrame:
  """Runs the whole study into ``workdir``; returns the per-image records of every model."""
  names = model_names(config)
  inits = init_paths(config, names)  # checked before any work
  _claim_workdir(workdir, config)
  data_dir = config.data_dir or os.path.join(workdir, 'data')
  train_src, val_src, test_src = (data.open_split(config.data, s, data_dir)
                                  for s in ('train', 'validation', 'test'))
  log(f'data: {len(train_src)} train / {len(val_src)} validation / {len(test_src)} test images '
      f'in {data_dir}; devices: {jax.device_count()} x {jax.devices()[0].platform}')
  mesh = mesh_lib.make_mesh()
  frames, trained = [], {}
  score_kw = dict(batch_size=config.score.batch_size, mesh=mesh, progress=False,
                  n_resamples=config.score.n_resamples, seed=config.score.seed)
  for name in names:
    cell = os.path.join(workdir, 'models', name)
    model = trained[name] = _train_or_load(name, config, cell, train_src, val_src, mesh, log,
                                           inits.get(name, ''))
    layer = models.resolve_layer(model, config.cam.layer or None)
    path = os.path.join(cell, 'records.csv')
    if os.path.exists(path):
      records = summary.read_records(path)
    else:
      records = driver.score(model, test_src, method=config.cam.method, layer=layer,
                             target=config.cam.target, aug_smooth=config.cam.aug_smooth,
                             eigen_smooth=config.cam.eigen_smooth, **score_kw).records
      records.insert(0, 'model', name)
      records.insert(1, 'layer', layer)
      records.to_csv(path, index=False)
    frames.append(records)
    log(f'[{name}] scored {len(records)} test images ({int(records["has_mask"].sum())} with a '
        f'lesion), {config.cam.method} at {layer}')
  base = driver.random_baseline(test_src, grid=config.score.baseline_grid, **score_kw).records
  base.insert(0, 'model', report.BASELINE)
  base.insert(1, 'layer', f'{config.score.baseline_grid}x{config.score.baseline_grid} uniform')
  frames.append(base)
  records = pd.concat(frames, ignore_index=True)
  records.to_csv(os.path.join(workdir, 'records.csv'), index=False)
  _overlays(workdir, trained, test_src, config, mesh)
  write_study_report(workdir, config, records)
  log(f'report: {os.path.join(workdir, "report.md")}')
  return records


def write_study_report(workdir: str, config, records: pd.DataFrame) -> str:
  """``report.md`` of a study from its config and per-image records (see ``cam_jax.report``)."""
  d = config.data
  names = [m for m in records['model'].unique() if m != report.BASELINE]
  notes = [f'Data: phantom chest X-rays, {d.image_size} px, seed {d.seed}; '
           f'{d.num_train} train / {d.num_validation} validation / {d.num_test} test images. '
           f'CAM: {config.cam.method}, target {config.cam.target:+d} (the positive finding), '
           'pytorch-grad-cam postprocess (ReLU, min-max, bilinear).',
           f'Per-image records: `records.csv`. Models: {", ".join(names)}.']
  return report.write_report(workdir, records, title='cam_jax study: Grad-CAM against lesion masks',
                             notes=notes, n_resamples=config.score.n_resamples,
                             seed=config.score.seed)
