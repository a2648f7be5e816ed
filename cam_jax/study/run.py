"""The study: per model cell, train (or load) one architecture with one seed, score its heat maps
on the test split for every CAM method, run the sanity check and the fill check, keep its heat
maps of the lesion images; then the random baseline and the pairs cell (repeatability across
seeds, reproducibility across depths, overlays); then the report (``cam_jax.report``).

Cells and resuming are ``cam_jax.study.cells``'. A workdir belongs to one config; reusing it with
another is an error.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from concurrent import futures

import jax
import numpy as np
import pandas as pd
from flax import nnx

from cam_jax import cams, data, models, report
from cam_jax.analysis import summary
from cam_jax.core import compile_cache, mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.core.text import split_list
from cam_jax.metrics import faithfulness
from cam_jax.models import checkpoint
from cam_jax.report import metadata
from cam_jax.scoring import agreement, driver, fill_check, sanity, shortcut
from cam_jax.study import cells
from cam_jax.train import loop

RECORDS, SANITY, FILL_CHECK = 'records.csv', 'sanity.csv', 'fill_check.csv'
SHORTCUT = 'shortcut.csv'
HISTORY, HEAT, AGREEMENT = 'history.csv', 'heat_{method}.npz', 'agreement.csv'
OVERLAY_CASES = ('best', 'worst', 'random')


def methods(config) -> list[str]:
  names = split_list(config.cam.methods)
  if not names:
    raise BadInput(f'config.cam.methods is empty; choose from: {", ".join(cams.METHODS)}')
  for m in names:
    if m not in cams.METHODS:
      raise BadInput(f'unknown CAM method {m!r} in config.cam.methods; choose from: '
                     f'{", ".join(cams.METHODS)}')
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


def check_config(config) -> None:
  """Every name and option of ``config`` checked before any work."""
  init_paths(config, cells.architectures(config))
  cells.runs(config)
  methods(config)
  models.compute_dtype(config.cam.dtype, 'config.cam.dtype')
  driver.check_metrics(split_list(config.score.metrics))
  faithfulness.check_fill(config.score.fill)
  for mode in split_list(config.sanity.mode):
    if mode not in sanity.MODES:
      raise BadInput(f'unknown config.sanity.mode {mode!r}; choose from: '
                     f'{", ".join(sanity.MODES)} (comma-separated), or \'\' to skip')
  if config.score.fill_check_models not in ('shallowest', 'every'):
    raise BadInput(f'config.score.fill_check_models must be shallowest or every, got '
                   f'{config.score.fill_check_models!r}')
  if config.shortcut and config.data.name != 'phantom':
    raise BadInput(f'config.shortcut {config.shortcut!r} needs the phantom, whose tube pixels are '
                   f'known; config.data.name is {config.data.name!r}')
  unknown = set(config.train_overrides) - set(models.FAMILIES)
  if unknown:
    raise BadInput(f'config.train_overrides keys {sorted(unknown)} are not families; choose '
                   f'from: {", ".join(models.FAMILIES)}')


def claim_workdir(workdir: str, config) -> None:
  """Writes ``config.json``, or checks that the one there is ``config``."""
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


def _recipe(run: cells.Run, config):
  return checkpoint.recipe(run.architecture, config.num_classes, config.data.image_size,
                           config.train.seed + run.seed)


def control_data(config):
  """``config.data`` without the confounder: the same images (same seed), no tube drawn."""
  d = config.data.copy_and_resolve_references()
  d.update(tube_rate_pos=0.0, tube_rate_neg=0.0)
  return d


def _train_or_load(run, config, cell, splits, mesh, log):
  """The cell's trained model: its checkpoint when training finished (checkpoint and
  ``history.csv`` written), else ``loop.train``, which resumes from the newest training state
  (a run killed after training only exports again and writes the history)."""
  ckpt = os.path.join(cell, loop.BEST)
  if checkpoint.exists(ckpt) and os.path.exists(os.path.join(cell, HISTORY)):
    log(f'[{run.name}] checkpoint found, not retraining: {ckpt}')
    return checkpoint.load(ckpt)[0]
  train_config = config.train.copy_and_resolve_references()
  train_config.update(config.train_overrides.get(run.family, {}))
  train_config.seed = config.train.seed + run.seed
  init_from = init_paths(config, cells.architectures(config)).get(run.architecture, '')
  result = loop.train(_recipe(run, config), train_config, splits['train'], splits['validation'],
                      workdir=cell, mesh=mesh, log=log, init_from=init_from,
                      log_name=run.name)
  pd.DataFrame(result.history).to_csv(os.path.join(cell, HISTORY), index=False)
  return result.model


def _fill_source(config, splits, fills):
  """The split ``config.score.fill_split`` when one of ``fills`` needs references, else None."""
  if not any(f in faithfulness.NEEDS_REFERENCE for f in fills):
    return None
  if config.score.fill_split not in splits:
    raise BadInput(f'unknown config.score.fill_split {config.score.fill_split!r}; choose one '
                   f'of: {", ".join(splits)}')
  return splits[config.score.fill_split]


def _tune_source(config, splits):
  """The split ``config.score.tune_split`` names (None for ''), where IoU thresholds are tuned."""
  split = config.score.tune_split
  if split and split not in splits:
    raise BadInput(f'unknown config.score.tune_split {split!r}; choose one of: '
                   f'{", ".join(splits)} (or \'\' for none)')
  return splits[split] if split else None


def _score_kw(config, splits, mesh):
  return dict(batch_size=config.score.batch_size, mesh=mesh, progress=False,
              n_resamples=config.score.n_resamples, seed=config.score.seed,
              tune_on=_tune_source(config, splits))


def _label(result, columns: dict) -> pd.DataFrame:
  """``result``'s records with ``columns`` (which model, method, layer) and its threshold first."""
  records = result.records
  threshold = np.nan if result.tuned_threshold is None else result.tuned_threshold
  for i, (column, value) in enumerate({**columns, 'tuned_threshold': threshold}.items()):
    records.insert(i, column, value)
  return records


def _cached(path, compute, **read):
  """The table at ``path``, computed by ``compute()`` and written there when absent."""
  if os.path.exists(path):
    return pd.read_csv(path, **read)
  table = compute()
  table.to_csv(path, index=False)
  return table


def _score(run, model, config, splits, mesh):
  """Test records of every CAM method, IoU threshold tuned on the tuning split first."""
  frames = []
  for method in methods(config):
    layer = models.resolve_layer(model, config.cam.layer or None)
    result = driver.score(
        model, splits['test'], method=method, layer=layer, target=config.cam.target,
        aug_smooth=config.cam.aug_smooth, eigen_smooth=config.cam.eigen_smooth,
        metrics=driver.check_metrics(split_list(config.score.metrics)),
        deletion_steps=config.score.deletion_steps, fill=config.score.fill,
        fill_from=_fill_source(config, splits, (config.score.fill,)),
        **_score_kw(config, splits, mesh))
    frames.append(_label(result, {
        'model': run.name, 'architecture': run.architecture, 'family': run.family,
        'depth': models.depth(model), 'seed': run.seed, 'method': method, 'layer': layer}))
  return pd.concat(frames, ignore_index=True)


def _sanity(run, model, config, splits, mesh):
  """Every method under every mode of ``config.sanity.mode`` (comma-separated)."""
  frames = []
  for method in methods(config):
    for mode in split_list(config.sanity.mode):
      rows = sanity.model_randomisation(
          model, splits['test'], recipe=_recipe(run, config), method=method,
          layer=config.cam.layer or None, mode=mode, n_images=config.sanity.n_images,
          batch_size=config.score.batch_size, target=config.cam.target, mesh=mesh)
      rows.insert(0, 'method', method)
      rows.insert(0, 'model', run.name)
      frames.append(rows)
  return pd.concat(frames, ignore_index=True)


def _checks_fill(run, config) -> bool:
  """Whether ``run`` gets the fill check: seed 0, and the shallowest of its family unless
  ``config.score.fill_check_models`` is 'every'."""
  if not config.score.fill_check or run.seed:
    return False
  if config.score.fill_check_models == 'every':
    return True
  family = [a for a in cells.architectures(config) if models.family(a) == run.family]
  depths = {a: models.depth(nnx.eval_shape(  # the architecture only, no weights allocated
      lambda a=a: models.create(a, image_size=config.data.image_size))) for a in family}
  return run.architecture == min(family, key=depths.get)


def _fill_check(run, model, config, splits, mesh):
  fills = split_list(config.score.fill_check)
  rows = fill_check.fill_check(model, splits['test'], fills=fills,
                               fill_from=_fill_source(config, splits, fills),
                               grid=config.score.baseline_grid,
                               n_steps=config.score.deletion_steps,
                               batch_size=config.score.batch_size, mesh=mesh,
                               seed=config.score.seed).records
  rows.insert(0, 'model', run.name)
  return rows


def _lesion_images(splits) -> list[dict]:
  test = splits['test']
  return [r for r in (test[i] for i in range(len(test))) if np.asarray(r['mask']).any()]


def _save_heat(run, model, config, splits, cell, mesh):
  """Every method's heat maps of the test images with a lesion, for the pairs cell."""
  lesions = _lesion_images(splits)
  for method in methods(config):
    path = os.path.join(cell, HEAT.format(method=method))
    if os.path.exists(path) or not lesions:
      continue
    maps = agreement.heat_maps(model, lesions, method=method, layer=config.cam.layer or None,
                               target=config.cam.target, aug_smooth=config.cam.aug_smooth,
                               eigen_smooth=config.cam.eigen_smooth,
                               batch_size=config.score.batch_size, mesh=mesh)
    np.savez_compressed(path + '.tmp.npz', **maps)
    os.replace(path + '.tmp.npz', path)


def _shortcut(run, model, config, splits, mesh):
  """Per method, ``scoring.shortcut`` records of the study's (confounded) test split."""
  frames = []
  for method in methods(config):
    rows = shortcut.shortcut_records(model, splits['test'], config.data, method=method,
                                     layer=config.cam.layer or None, target=config.cam.target,
                                     batch_size=config.score.batch_size, mesh=mesh)
    for i, (column, value) in enumerate((('model', run.name), ('architecture', run.architecture),
                                         ('seed', run.seed), ('control', run.control),
                                         ('method', method))):
      rows.insert(i, column, value)
    frames.append(rows)
  return pd.concat(frames, ignore_index=True)


def _model_cell(run, config, workdir, splits, mesh, log):
  cell = cells.path(workdir, run.name)
  os.makedirs(cell, exist_ok=True)
  trained_on = splits['control'] if run.control else splits
  model = _train_or_load(run, config, cell, trained_on, mesh, log)
  if config.cam.dtype != 'float32':  # the trained weights, scored in another compute dtype
    model = checkpoint.load(os.path.join(cell, loop.BEST), log=log, dtype=config.cam.dtype)[0]
  if config.shortcut:
    table = _cached(os.path.join(cell, SHORTCUT),
                    lambda: _shortcut(run, model, config, splits, mesh), dtype={'id': str})
    log(f'[{run.name}] heat more on the tube than on the lesion: '
        f'{int(table["tube_over_lesion"].sum())} of {int(table["has_tube"].sum())} tube images')
  if run.control:
    return
  records = _cached(os.path.join(cell, RECORDS), lambda: _score(run, model, config, splits, mesh),
                    dtype={'id': str, 'flags': str})
  log(f'[{run.name}] scored {records["id"].nunique()} test images '
      f'({int(records.drop_duplicates("id")["has_mask"].sum())} with a lesion), '
      f'{config.cam.methods} at {records["layer"].iloc[0]}')
  if config.sanity.mode and run.seed == 0:
    _cached(os.path.join(cell, SANITY), lambda: _sanity(run, model, config, splits, mesh))
  if _checks_fill(run, config):
    _cached(os.path.join(cell, FILL_CHECK),
            lambda: _fill_check(run, model, config, splits, mesh))
  _save_heat(run, model, config, splits, cell, mesh)


def _baseline_cell(config, workdir, splits, mesh, log):
  cell = cells.path(workdir, cells.BASELINE)
  os.makedirs(cell, exist_ok=True)
  grid = config.score.baseline_grid

  def compute():
    result = driver.random_baseline(splits['test'], grid=grid, **_score_kw(config, splits, mesh))
    return _label(result, {'model': report.BASELINE, 'layer': f'{grid}x{grid} uniform'})

  _cached(os.path.join(cell, RECORDS), compute, dtype={'id': str, 'flags': str})
  log(f'[{cells.BASELINE}] random {grid}x{grid} heat maps scored')


def _heat(workdir, run, method):
  with np.load(os.path.join(cells.path(workdir, run.name), HEAT.format(method=method))) as f:
    return {k: f[k] for k in f.files}


def pair_list(config) -> list[tuple[str, cells.Run, cells.Run]]:
  """(kind, a, b): each architecture's seed 0 against its seed 1 (repeatability), and every two
  depths of one family at seed 0 (reproducibility across architectures)."""
  archs = cells.architectures(config)
  pairs = [('repeatability', cells.Run(a, 0), cells.Run(a, 1)) for a in archs
           if config.seeds > 1]
  pairs += [('reproducibility', cells.Run(a, 0), cells.Run(b, 0))
            for i, a in enumerate(archs) for b in archs[i + 1:]
            if models.family(a) == models.family(b)]
  return pairs


def _agreement(config, workdir, log):
  frames = []
  for method in methods(config):
    for kind, a, b in pair_list(config):
      rows = agreement.compare_maps(_heat(workdir, a, method), _heat(workdir, b, method))
      for i, (column, value) in enumerate((('kind', kind), ('method', method), ('a', a.name),
                                           ('b', b.name), ('family', a.family))):
        rows.insert(i, column, value)
      frames.append(rows)
      log(f'{kind} ({method}): {a.name} vs {b.name}, mean SSIM {rows["ssim"].mean():.3f}')
  return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
      columns=['kind', 'method', 'a', 'b', 'family', 'id', 'ssim', 'spearman', 'flags'])


def overlay_picks(records: pd.DataFrame, count: int, seed: int) -> dict[str, list[str]]:
  """Lesion-image ids for the overlay grids: the ``count`` with the highest and the lowest mean
  EHR-AUC over every model and method (ties by id), and ``count`` drawn at random."""
  lesion = records[records['has_mask'] & (records['model'] != report.BASELINE)]
  means = lesion.groupby('id')['ehr_auc'].mean().sort_index(kind='stable')
  ranked = means.sort_values(kind='stable', ascending=False).index
  rng = np.random.default_rng(seed)
  picked = rng.choice(means.index.to_numpy(), size=min(count, len(means)), replace=False)
  return {'best': list(ranked[:count]), 'worst': list(ranked[::-1][:count]),
          'random': sorted(picked)}


def _overlays(config, workdir, splits, records):
  method = methods(config)[0]
  shown = [cells.Run(a, 0) for a in cells.architectures(config)]
  maps = {r.name: _heat(workdir, r, method) for r in shown}
  lesions = {str(data.pipeline.as_text(x['id'])): x for x in _lesion_images(splits)}
  out = cells.path(workdir, cells.PAIRS)
  for case, ids in overlay_picks(records, config.score.overlay_count, config.score.seed).items():
    if not ids:
      continue
    heat = {}
    for name, m in maps.items():
      where = {i: k for k, i in enumerate(m['id'])}
      heat[name] = np.stack([m['heat'][where[i]] for i in ids]).astype(np.float32)
    report.figures.overlay_grid(np.stack([lesions[i]['image'][..., 0] for i in ids]) / 255.0,
                                np.stack([lesions[i]['mask'] for i in ids]), heat, ids,
                                os.path.join(out, report.OVERLAYS.format(case=case)))


def _pairs_cell(config, workdir, splits, log):
  cell = cells.path(workdir, cells.PAIRS)
  os.makedirs(cell, exist_ok=True)
  _cached(os.path.join(cell, AGREEMENT), lambda: _agreement(config, workdir, log),
          dtype={'id': str, 'flags': str})
  _overlays(config, workdir, splits, read_records(workdir, config, models_only=True))


def read_records(workdir: str, config, *, models_only: bool = False) -> pd.DataFrame:
  """The per-image records of every model cell (and of the baseline unless ``models_only``)."""
  names = [r.name for r in cells.model_runs(config)] + ([] if models_only else [cells.BASELINE])
  return pd.concat([summary.read_records(os.path.join(cells.path(workdir, n), RECORDS))
                    for n in names], ignore_index=True)


def read_tables(workdir: str, config, file: str) -> pd.DataFrame | None:
  """Concatenation of the model cells' ``file`` tables (sanity, fill check, shortcut), None if
  none."""
  frames = [pd.read_csv(p, dtype={'id': str, 'block': str, 'flags': str, 'fill': str})
            for p in (os.path.join(cells.path(workdir, r.name), file) for r in cells.runs(config))
            if os.path.exists(p)]
  return pd.concat(frames, ignore_index=True) if frames else None


def _open_splits(config, log):
  data_dir = data.cache.data_dir(config.data_dir)
  splits = {s: data.open_split(config.data, s, data_dir) for s in ('train', 'validation', 'test')}
  if config.shortcut:  # the control models train and validate without the confounder
    splits['control'] = {s: data.open_split(control_data(config), s, data_dir)
                         for s in ('train', 'validation')}
  log(f'data: {len(splits["train"])} train / {len(splits["validation"])} validation / '
      f'{len(splits["test"])} test images in {data_dir}; devices: {jax.device_count()} x '
      f'{jax.devices()[0].platform}')
  return splits


def default_workers() -> int:
  """How many cells run at once when not told: 2 on a CPU host with two cores or more (XLA
  compiles on one core, so a second cell uses the other), else 1 (an accelerator belongs to
  one process)."""
  return 2 if jax.default_backend() == 'cpu' and (os.cpu_count() or 1) >= 2 else 1


def _run_cell(name, config, workdir, splits, mesh, log):
  start = time.perf_counter()
  if name == cells.BASELINE:
    _baseline_cell(config, workdir, splits, mesh, log)
  elif name == cells.PAIRS:
    _pairs_cell(config, workdir, splits, log)
  else:
    _model_cell({r.name: r for r in cells.runs(config)}[name], config, workdir, splits, mesh,
                log)
  seconds = time.perf_counter() - start
  cells.mark_done(workdir, name, seconds, metadata.devices())
  log(f'[{name}] done in {seconds:.1f} s')


_WORKER = {}  # in a worker process: its log queue, and the splits and mesh once opened


def _start_worker(messages, cache_dir: str | None) -> None:
  _WORKER['log'] = messages.put
  if cache_dir:
    compile_cache.enable(cache_dir)
  parent = os.getppid()

  def exit_with_parent():  # a killed study leaves no cell running: it resumes where it died
    while os.getppid() == parent:
      time.sleep(0.5)
    os._exit(1)

  threading.Thread(target=exit_with_parent, daemon=True).start()


def _worker_cell(name, config, workdir) -> None:
  if 'splits' not in _WORKER:
    _WORKER.update(splits=_open_splits(config, lambda message: None), mesh=mesh_lib.make_mesh())
  _run_cell(name, config, workdir, _WORKER['splits'], _WORKER['mesh'], _WORKER['log'])


def _relay(messages, log) -> None:
  for message in iter(messages.get, None):
    log(message)


def _run_side_by_side(names, config, workdir, workers: int, log) -> None:
  """The cells ``names`` (model cells and the baseline, which need no other) on ``workers``
  processes, in order as processes come free; their log lines relayed to ``log``."""
  context = multiprocessing.get_context('spawn')  # a forked JAX runtime is not safe
  messages = context.Queue()
  relay = threading.Thread(target=_relay, args=(messages, log), daemon=True)
  relay.start()
  try:
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                     initargs=(messages, compile_cache.directory_in_use())) as pool:
      jobs = [pool.submit(_worker_cell, n, config, workdir) for n in names]
      try:
        for job in futures.as_completed(jobs):
          job.result()
      except BaseException:
        for job in jobs:
          job.cancel()
        raise
  finally:
    messages.put(None)
    relay.join()


def run_cells(config, workdir: str, names: list[str], *, log=print, workers: int = 1) -> None:
  """Runs the cells ``names`` (of ``cells.plan(config)``) that have not finished, in order;
  with ``workers`` > 1 (CPU hosts only), the model cells and the baseline run that many at a
  time, each in a process of its own, and the pairs cell after them."""
  if jax.process_count() > 1:
    raise BadInput(f'the study runs as one process (every device of one host), not as process '
                   f'{jax.process_index()} of {jax.process_count()}: train its models as a '
                   'multi-process job with `cam_jax train`, score them with `cam_jax score`')
  if not isinstance(workers, int) or workers < 1:
    raise BadInput(f'workers must be an int >= 1, got {workers!r}')
  if workers > 1 and jax.default_backend() != 'cpu':
    raise BadInput(f'{workers} workers: cells run side by side on a CPU host only, and this one '
                   f'computes on {jax.default_backend()}, which belongs to one process; run '
                   'cells as separate jobs with --cell=NAME instead')
  check_config(config)
  plan = cells.plan(config)
  unknown = [n for n in names if n not in plan]
  if unknown:
    raise BadInput(f'unknown cells {unknown}; this study has: {", ".join(plan)}')
  claim_workdir(workdir, config)
  todo = [n for n in plan if n in names and not cells.is_done(workdir, n)]
  for n in plan:
    if n in names and n not in todo:
      log(f'[{n}] done, skipped')
  if not todo:
    return
  if cells.PAIRS in todo:  # before any work: the pairs compare every model cell's maps
    cells.check_done(workdir, [r.name for r in cells.model_runs(config) if r.name not in todo],
                     'the pairs cell')
  splits, mesh = _open_splits(config, log), mesh_lib.make_mesh()  # prepares the data once
  alone = [n for n in todo if n != cells.PAIRS]
  if workers > 1 and len(alone) > 1:
    _run_side_by_side(alone, config, workdir, min(workers, len(alone)), log)
    todo = [n for n in todo if n not in alone]
  for name in todo:
    _run_cell(name, config, workdir, splits, mesh, log)


def run_study(config, workdir: str, *, cell: str = '', log=print,
              workers: int = 1) -> pd.DataFrame | None:
  """Runs the study into ``workdir`` (only the cell ``cell`` when given; ``workers``: see
  ``run_cells``) and, once every cell has finished, writes the report; returns every cell's
  per-image records then, else None."""
  run_cells(config, workdir, [cell] if cell else cells.plan(config), log=log, workers=workers)
  if not all(cells.is_done(workdir, n) for n in cells.plan(config)):
    log(f'[{cell}] finished; the report waits for the other cells of {workdir}')
    return None
  records = read_records(workdir, config)
  write_study_report(workdir, config, records)
  for name in (report.REPORT, report.REPORT_HTML):
    log(f'report: {os.path.join(workdir, name)}')
  return records


def _selected_epochs(workdir: str, config) -> str:
  """'vgg_tiny_1_s0 epoch 2/2, ...': which epoch each model's scored weights come from."""
  parts = []
  for r in cells.runs(config):
    cell = cells.path(workdir, r.name)
    best = checkpoint.provenance(os.path.join(cell, loop.BEST))
    last = checkpoint.provenance(os.path.join(cell, loop.LAST))
    if best and last:
      parts.append(f"{r.name} {best['epoch']}/{last['epoch']}")
  return ', '.join(parts)


def write_study_report(workdir: str, config, records: pd.DataFrame | None = None) -> str:
  """``report.md`` and ``report.html`` of a finished study from its cells (``cam_jax.report``);
  ``records``: ``read_records(workdir, config)`` when already read."""
  cells.check_done(workdir, cells.plan(config), 'the report')
  records = read_records(workdir, config) if records is None else records
  d = config.data
  explained = cams.describe_target(config.cam.target, config.num_classes)
  if d.name == 'phantom':
    about = (f'Data: phantom chest X-rays, {d.image_size} px, lesion contrast '
             f'{d.lesion_contrast}, seed {d.seed}; {d.num_train} train / {d.num_validation} '
             f'validation / {d.num_test} test images.')
  else:
    about = (f'Data: {d.name} from {d.manual_dir}, resized to {d.image_size} px (masks by '
             f'{d.mask_resize}), split seed {d.seed}; `cam_jax prepare` lists the splits and '
             'the quarantined records.')
  notes = [f'{about} CAM: {config.cam.methods}, target {config.cam.target:+d} ({explained}), '
           'pytorch-grad-cam postprocess (ReLU, min-max, bilinear).',
           f'Models: {config.models}, each trained with {config.seeds} seeds (train.seed + 0 .. '
           f'{config.seeds - 1}); per-image records: `cells/<model>_s<seed>/records.csv`.']
  selected = _selected_epochs(workdir, config)
  if selected:
    notes.append('Each model is scored with the weights of its epoch with the best validation '
                 f'ROC-AUC (epoch / epochs: {selected}; `cells/<model>_s<seed>/checkpoint/'
                 "about.json`; the last epoch's weights are in `checkpoint_last/`).")
  pairs = cells.path(workdir, cells.PAIRS)
  return report.write_report(
      workdir, records, config=config, title='cam_jax study: how far to trust each heat map',
      notes=notes, explained=explained,
      sanity=read_tables(workdir, config, SANITY),
      agreement=pd.read_csv(os.path.join(pairs, AGREEMENT), dtype={'id': str, 'flags': str}),
      fill_check=read_tables(workdir, config, FILL_CHECK),
      shortcut=read_tables(workdir, config, SHORTCUT),
      overlays={c: os.path.join(cells.CELLS, cells.PAIRS, report.OVERLAYS.format(case=c))
                for c in OVERLAY_CASES
                if os.path.exists(os.path.join(pairs, report.OVERLAYS.format(case=c)))},
      cells_run=cells.records(workdir, cells.plan(config)))
