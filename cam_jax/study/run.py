"""The study: train each model, score its CAMs on the test split, run the sanity and agreement
checks, and write records and a report.

Resumable per cell: a model whose checkpoint exists is not retrained, and one whose records
(or sanity rows) exist is not rescored. A workdir belongs to one config; reusing it with another
is an error.
"""

from __future__ import annotations

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cam_jax import cams, data, models, report
from cam_jax.analysis import summary
from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.core.text import split_list
from cam_jax.metrics import faithfulness
from cam_jax.models import checkpoint
from cam_jax.scoring import agreement, driver, fill_check, sanity
from cam_jax.train import loop

SANITY, AGREEMENT, FILL_CHECK = 'sanity.csv', 'agreement.csv', 'fill_check.csv'


def model_names(config) -> list[str]:
  """The study's models, each checked against the registry."""
  return _checked_names(config.models, 'config.models', allow_empty=False)


def _checked_names(text: str, field: str, *, allow_empty: bool) -> list[str]:
  names = split_list(text)
  if not names and not allow_empty:
    raise BadInput(f'{field} is empty; give a comma-separated list of ' +
                   ', '.join(models.names()))
  for n in names:
    models.check_name(n)
  return names


def init_paths(config, names: list[str]) -> dict[str, str]:
  """``config.init_from`` ('name=path,...') as a dict, each name one of the study's models."""
  paths = {}
  for item in split_list(config.init_from):
    name, sep, path = item.partition('=')
    if not sep or name.strip() not in names:
      raise BadInput(f'config.init_from item {item!r} is not <model>=<path> with <model> one '
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
      raise BadInput(f'{workdir} holds a study run with another config ({path}); '
                     'use a new --workdir or delete it')
  with open(path, 'w') as f:
    json.dump(mine, f, indent=1, sort_keys=True)


def _recipe(name, config, seed_offset=0):
  return checkpoint.recipe(name, config.num_classes, config.data.image_size,
                           config.train.seed + seed_offset)


def _train_or_load(name, config, cell, splits, mesh, log, init_from, seed_offset=0):
  ckpt = os.path.join(cell, loop.BEST)
  if checkpoint.exists(ckpt):
    log(f'[{os.path.basename(cell)}] checkpoint found, not retraining: {ckpt}')
    return checkpoint.load(ckpt)[0]
  train_config = config.train.copy_and_resolve_references()
  train_config.update(config.train_overrides.get(name, {}))
  train_config.seed = config.train.seed + seed_offset
  result = loop.train(_recipe(name, config, seed_offset), train_config, splits['train'],
                      splits['validation'], workdir=cell, mesh=mesh, log=log, init_from=init_from)
  pd.DataFrame(result.history).to_csv(os.path.join(cell, 'history.csv'), index=False)
  return result.model


def _overlays(workdir, trained, test_src, config):
  """Heat maps of a few positive test images for every model, drawn to ``overlays.png``."""
  picks = [i for i in range(len(test_src)) if test_src[i]['label'] == 1]
  picks = picks[:config.score.overlay_count]
  if not picks:
    return
  recs = [test_src[i] for i in picks]
  pixels = np.stack([r['image'] for r in recs])
  heatmaps = {}
  for name, model in trained.items():
    images = model.normalisation.normalise(pixels)
    fn, state, _ = cams.heat_function(model, config.cam.method, config.cam.layer or None,
                                      aug_smooth=config.cam.aug_smooth,
                                      eigen_smooth=config.cam.eigen_smooth)
    heatmaps[name] = np.asarray(fn(state, jnp.asarray(images),
                                   jnp.full((len(picks),), config.cam.target))[0])
  report.figures.overlay_grid(pixels[..., 0] / 255.0,
                              np.stack([r['mask'] for r in recs]), heatmaps,
                              [str(data.pipeline.as_text(r['id'])) for r in recs],
                              os.path.join(workdir, report.OVERLAYS))


def _score_model(name, model, layer, config, splits, score_kw):
  """Test records of one model, its IoU threshold tuned on the tuning split first."""
  result = driver.score(model, splits['test'], method=config.cam.method, layer=layer,
                        target=config.cam.target, aug_smooth=config.cam.aug_smooth,
                        eigen_smooth=config.cam.eigen_smooth, metrics=_metrics(config),
                        deletion_steps=config.score.deletion_steps, fill=config.score.fill,
                        fill_from=_fill_source(config, splits, (config.score.fill,)),
                        **score_kw)
  return _label(result, name, layer, models.depth(model))


def _fill_source(config, splits, fills):
  """The split ``config.score.fill_split`` when one of ``fills`` needs references, else None."""
  if not any(f in faithfulness.NEEDS_REFERENCE for f in fills):
    return None
  if config.score.fill_split not in splits:
    raise BadInput(f'unknown config.score.fill_split {config.score.fill_split!r}; choose one '
                   f'of: {", ".join(splits)}')
  return splits[config.score.fill_split]


def _fill_check(name, model, cell, config, splits, mesh):
  """``scoring.fill_check`` of one model on the healthy test images, per fill of
  ``config.score.fill_check``; cached in the cell's ``fill_check.csv``."""
  path = os.path.join(cell, FILL_CHECK)
  if os.path.exists(path):
    return pd.read_csv(path, dtype={'id': str, 'fill': str})
  fills = split_list(config.score.fill_check)
  rows = fill_check.fill_check(model, splits['test'], fills=fills,
                               fill_from=_fill_source(config, splits, fills),
                               grid=config.score.baseline_grid,
                               n_steps=config.score.deletion_steps,
                               batch_size=config.score.batch_size, mesh=mesh,
                               seed=config.score.seed).records
  rows.insert(0, 'model', name)
  rows.to_csv(path, index=False)
  return rows


def _metrics(config):
  return driver.check_metrics(split_list(config.score.metrics))


def _label(result, name, layer, depth):
  """``result``'s records with the columns that say which model and layer they score."""
  records = result.records
  threshold = np.nan if result.tuned_threshold is None else result.tuned_threshold
  for i, (column, value) in enumerate((('model', name), ('layer', layer), ('depth', depth),
                                       ('tuned_threshold', threshold))):
    records.insert(i, column, value)
  return records


def _tune_source(config, splits):
  """The split ``config.score.tune_split`` names (None for ''), where IoU thresholds are tuned."""
  split = config.score.tune_split
  if split and split not in splits:
    raise BadInput(f'unknown config.score.tune_split {split!r}; choose one of: '
                   f'{", ".join(splits)} (or \'\' for none)')
  return splits[split] if split else None


def _baseline(config, splits, score_kw):
  grid = config.score.baseline_grid
  return _label(driver.random_baseline(splits['test'], grid=grid, **score_kw), report.BASELINE,
                f'{grid}x{grid} uniform', np.nan)


def _sanity(name, model, cell, config, test_src, mesh):
  path = os.path.join(cell, SANITY)
  if os.path.exists(path):
    return pd.read_csv(path, dtype={'id': str, 'block': str, 'flags': str})
  rows = sanity.model_randomisation(
      model, test_src, recipe=_recipe(name, config), method=config.cam.method,
      layer=config.cam.layer or None, mode=config.sanity.mode, n_images=config.sanity.n_images,
      batch_size=config.score.batch_size, target=config.cam.target, mesh=mesh)
  rows.insert(0, 'model', name)
  rows.to_csv(path, index=False)
  return rows


def _agreement(workdir, trained, repeats, config, test_src, mesh, log):
  """Repeatability (a model against its twin trained with another seed) and reproducibility
  (every pair of models), per test image; cached in ``agreement.csv``."""
  path = os.path.join(workdir, AGREEMENT)
  if os.path.exists(path):
    return pd.read_csv(path, dtype={'id': str, 'a': str, 'b': str, 'flags': str})
  pairs = [('repeatability', (n, trained[n]), (f'{n} (seed +1)', twin))
           for n, twin in repeats.items()]
  pairs += [('reproducibility', a, b) for a, b in itertools.combinations(trained.items(), 2)]
  frames = []
  for kind, (name_a, model_a), (name_b, model_b) in pairs:
    rows = agreement.map_agreement(model_a, model_b, test_src, method=config.cam.method,
                                   layer_a=config.cam.layer or None,
                                   layer_b=config.cam.layer or None, target=config.cam.target,
                                   batch_size=config.score.batch_size, mesh=mesh)
    for i, (column, value) in enumerate((('kind', kind), ('a', name_a), ('b', name_b))):
      rows.insert(i, column, value)
    frames.append(rows)
    log(f'{kind}: {name_a} vs {name_b}, mean SSIM {rows["ssim"].mean():.3f}')
  table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
  table.to_csv(path, index=False)
  return table


def run_study(config, workdir: str, *, log=print) -> pd.DataFrame:
  """Runs the whole study into ``workdir``; returns the per-image records of every model."""
  if jax.process_count() > 1:
    raise BadInput(f'the study runs as one process (every device of one host), not as process '
                   f'{jax.process_index()} of {jax.process_count()}: train its models as a '
                   'multi-process job with `cam_jax train`, score them with `cam_jax score`')
  names = model_names(config)
  repeat = _checked_names(config.repeat_models, 'config.repeat_models', allow_empty=True)
  if set(repeat) - set(names):
    raise BadInput(f'config.repeat_models {sorted(set(repeat) - set(names))} are not among '
                   f'config.models ({", ".join(names)})')
  inits = init_paths(config, names)  # checked before any work
  _metrics(config)
  faithfulness.check_fill(config.score.fill)
  _claim_workdir(workdir, config)
  data_dir = data.cache.data_dir(config.data_dir)
  splits = {s: data.open_split(config.data, s, data_dir) for s in ('train', 'validation', 'test')}
  test_src = splits['test']
  log(f'data: {len(splits["train"])} train / {len(splits["validation"])} validation / '
      f'{len(test_src)} test images in {data_dir}; devices: {jax.device_count()} x '
      f'{jax.devices()[0].platform}')
  mesh = mesh_lib.make_mesh()
  frames, sanity_frames, fill_frames, trained, repeats = [], [], [], {}, {}
  score_kw = dict(batch_size=config.score.batch_size, mesh=mesh, progress=False,
                  n_resamples=config.score.n_resamples, seed=config.score.seed,
                  tune_on=_tune_source(config, splits))
  for name in names:
    cell = os.path.join(workdir, 'models', name)
    model = trained[name] = _train_or_load(name, config, cell, splits, mesh, log,
                                           inits.get(name, ''))
    if name in repeat:
      repeats[name] = _train_or_load(name, config, os.path.join(workdir, 'models',
                                                                f'{name}_seed+1'),
                                     splits, mesh, log, inits.get(name, ''), seed_offset=1)
    layer = models.resolve_layer(model, config.cam.layer or None)
    path = os.path.join(cell, 'records.csv')
    if os.path.exists(path):
      records = summary.read_records(path)
    else:
      records = _score_model(name, model, layer, config, splits, score_kw)
      records.to_csv(path, index=False)
    frames.append(records)
    log(f'[{name}] scored {len(records)} test images ({int(records["has_mask"].sum())} with a '
        f'lesion), {config.cam.method} at {layer}')
    if config.sanity.mode:
      sanity_frames.append(_sanity(name, model, cell, config, test_src, mesh))
    if config.score.fill_check:
      fill_frames.append(_fill_check(name, model, cell, config, splits, mesh))
  frames.append(_baseline(config, splits, score_kw))
  records = pd.concat(frames, ignore_index=True)
  records.to_csv(os.path.join(workdir, 'records.csv'), index=False)
  if sanity_frames:
    pd.concat(sanity_frames, ignore_index=True).to_csv(os.path.join(workdir, SANITY), index=False)
  if fill_frames:
    pd.concat(fill_frames, ignore_index=True).to_csv(os.path.join(workdir, FILL_CHECK),
                                                     index=False)
  _agreement(workdir, trained, repeats, config, test_src, mesh, log)
  _overlays(workdir, trained, test_src, config)
  write_study_report(workdir, config, records)
  for name in (report.REPORT, report.REPORT_HTML):
    log(f'report: {os.path.join(workdir, name)}')
  return records


def _read_optional(path, **kw):
  return pd.read_csv(path, **kw) if os.path.exists(path) and os.path.getsize(path) > 1 else None


def _selected_epochs(workdir: str) -> str:
  """'vgg_tiny epoch 5/6, ...': which epoch each trained model's scored weights come from."""
  root = os.path.join(workdir, 'models')
  parts = []
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    best = checkpoint.provenance(os.path.join(root, name, loop.BEST))
    last = checkpoint.provenance(os.path.join(root, name, loop.LAST))
    if best and last:
      parts.append(f"{name} epoch {best['epoch']}/{last['epoch']}")
  return ', '.join(parts)


def write_study_report(workdir: str, config, records: pd.DataFrame) -> str:
  """``report.md`` and ``report.html`` of a study from its config, per-image records and, where
  the workdir has them, its sanity and agreement tables (see ``cam_jax.report``)."""
  d = config.data
  explained = cams.describe_target(config.cam.target, config.num_classes)
  names = [m for m in records['model'].unique() if m != report.BASELINE]
  if d.name == 'phantom':
    about = (f'Data: phantom chest X-rays, {d.image_size} px, seed {d.seed}; {d.num_train} '
             f'train / {d.num_validation} validation / {d.num_test} test images.')
  else:
    about = (f'Data: {d.name} from {d.manual_dir}, resized to {d.image_size} px (masks by '
             f'{d.mask_resize}), split seed {d.seed}; `cam_jax prepare` lists the splits and '
             'the quarantined records.')
  notes = [f'{about} CAM: {config.cam.method}, target {config.cam.target:+d} ({explained}), '
           'pytorch-grad-cam postprocess (ReLU, min-max, bilinear).',
           f'Per-image records: `records.csv`. Models: {", ".join(names)}.']
  selected = _selected_epochs(workdir)
  if selected:
    notes.append('Each model is scored with the weights of its epoch with the best validation '
                 f'ROC-AUC ({selected}; `models/<name>/checkpoint/about.json`; the last '
                 "epoch's weights are in `checkpoint_last/`).")
  return report.write_report(
      workdir, records, explained=explained,
      title='cam_jax study: how far to trust each heat map', notes=notes,
      n_resamples=config.score.n_resamples, seed=config.score.seed,
      sanity=_read_optional(os.path.join(workdir, SANITY), dtype={'id': str, 'block': str}),
      agreement=_read_optional(os.path.join(workdir, AGREEMENT), dtype={'id': str}),
      fill=config.score.get('fill', 'rise'),  # a study run before fills were configurable
      fill_check=_read_optional(os.path.join(workdir, FILL_CHECK), dtype={'id': str}))
