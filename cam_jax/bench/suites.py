"""The bench suites: the cases each one times, built from a bench config (``configs/bench*.py``).

Suite ``cams`` (``configs/bench.py``), per model: forward-only, Grad-CAM (raw maps) and the fused
scoring step (Grad-CAM, postprocess and every localisation metric) on one device-resident batch;
then whole-data-set throughput of ``cam_jax.score`` streaming the phantom test split against
forward-only over the same stream. Suite ``scoring`` (``configs/bench_scoring.py``), per model,
streaming the test split: Grad-CAM heat maps to the host (the reference), ``cam_jax.score``
with the localisation metrics fused on device, the same metrics on the host in NumPy per image,
and the faithfulness metrics. Suite ``zoo`` (``configs/bench_zoo.py``), per model: the jitted
cam_jax forward beside the same architecture and weights in torch (eager, no grad). Suite
``cams_vs_torch`` (``configs/bench_cams_torch.py``), per model and method: cam_jax heat maps
(CAM and postprocess in one jitted call) beside pytorch-grad-cam on the same weights. Suite
``data`` (``configs/bench_data.py``): preparing real data, one process decoding 1024 x 1024
JPEG-baseline DICOMs (SIIM's kind) and resizing them to each size (images/s per core), and the
training pipeline (records at each size, held in memory, through ``CropRotate`` augmentation
and batching) per grain thread count. Suite ``train`` (``configs/bench_train.py``), per model
and compute dtype: cam_jax's jitted train step beside a torch training step of the same
architecture, weights, batch, loss and optimiser; then, per model, the real training loop on
the phantom and the input wait its log reports. Suite ``peer`` (``configs/bench_peer.py``, in
``cam_jax.bench.peer``), per model: the whole scoring job as users write it today
(pytorch-grad-cam, Quantus and NumPy) beside ``cam_jax.score`` on the same weights, images and
masks, and the agreement of the two. Suite ``accelerator`` (``configs/bench_accelerator.py``) runs
several of them in one process, each from its own sub-config, with the device's memory
high-water mark after each; the ``cams`` suite then sweeps compute dtypes and batch sizes.
"""

import functools
import importlib.util
import io
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from cam_jax import cams, data, models
from cam_jax.bench import harness as bench, peer
from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.core.text import split_list
from cam_jax.models import checkpoint, normalisation
from cam_jax.scoring import driver
from cam_jax.testing import host_metrics
from cam_jax.train import loop, observe, optim, step as step_lib

SUITES = ('cams', 'scoring', 'zoo', 'cams_vs_torch', 'data', 'train', 'peer', 'accelerator')
# The suites that time torch beside cam_jax, and the packages they import.
PEER_PACKAGES = {'zoo': ('torch',), 'cams_vs_torch': ('torch', 'pytorch_grad_cam'),
                 'train': ('torch',), 'peer': ('torch', 'pytorch_grad_cam', 'quantus')}


def check_packages(config) -> None:
  """BadInput naming the peer packages the suite (every part of an ``accelerator`` config) needs
  and this environment lacks, before any case runs."""
  suites = ([config[p].suite for p in split_list(config.parts) if p in config]
            if config.suite == 'accelerator' else [config.suite])
  missing = sorted({m for s in suites for m in PEER_PACKAGES.get(s, ())
                    if importlib.util.find_spec(m) is None})
  if missing:
    raise BadInput(f'the {"/".join(suites)} bench needs {", ".join(missing)}, which this '
                   "environment lacks: pip install -e '.[test]' && pip install --no-deps "
                   'grad-cam==1.5.5 quantus==0.6.0 (the README\'s second command)')


def _sweep(config) -> list[tuple[str, int]]:
  """(compute dtype, batch size) pairs of the ``cams`` suite: ``config.dtypes`` x
  ``config.batch_sizes`` where the config has them, else float32 at ``config.batch_size``."""
  dtypes = _dtypes(config) if 'dtypes' in config else ['float32']
  sizes = ([int(b) for b in split_list(config.batch_sizes)] if 'batch_sizes' in config
           else [config.batch_size])
  return [(d, b) for d in dtypes for b in sizes]


def _batch_cases(name, config, mesh, dtype='float32', b=None):
  """Forward, each CAM method's raw maps and the fused scoring step on one device-resident batch
  of ``b`` (default ``config.batch_size``) images, computing in ``dtype``."""
  model = models.create(name, image_size=config.image_size, seed=0,
                        dtype=models.compute_dtype(dtype))
  b, s = b or config.batch_size, config.image_size
  rng = np.random.default_rng(0)
  sharded = mesh_lib.shard_batch({
      'image': rng.normal(size=(b, s, s, 1)).astype(np.float32),
      'mask': np.zeros((b, s, s), bool) | (np.arange(s) < s // 4)[None, :, None],
      'target': np.ones(b, np.int32)}, mesh)
  images, masks, targets = sharded['image'], sharded['mask'], sharded['target']
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  forward = step_lib.make_predict(graphdef, mesh)
  score_step, state, layer = driver.make_score_step(model, 'gradcam', None, mesh,
                                                   batch_size=b)
  group = f'{name} b{b}' + ('' if dtype == 'float32' else f' {dtype}')
  cases = [bench.Case('forward', lambda: forward(params, rest, images), b, group, reference=True)]
  for method in ['gradcam'] + split_list(config.methods):
    if method == 'rollout' and not hasattr(model, 'attention_layers'):
      continue
    fn, cam_state, cam_layer = cams.cam_function(model, method)
    cases.append(bench.Case(f'{method} raw ({cam_layer})',
                            functools.partial(fn, cam_state, images, targets), b, group))
  keys = jax.device_put(jax.random.split(jax.random.key(0), b), mesh_lib.data_sharded(mesh))
  cases.append(bench.Case('gradcam + postprocess + metrics',
                          lambda: score_step(state, images, masks, targets, keys), b, group))
  return cases


def _dataset_cases(name, config, source, mesh, dtype='float32'):
  model = models.create(name, image_size=config.image_size, seed=0,
                        dtype=models.compute_dtype(dtype))
  n, group = len(source), f'{name} data set' + ('' if dtype == 'float32' else f' {dtype}')
  kw = dict(batch_size=config.batch_size, mesh=mesh)
  stream = driver.record_stream(model, **kw)  # compiled once, at the warmup call
  return [
      bench.Case('forward (streamed)', lambda: loop.predict(model, source, **kw)[1], n, group,
                 reference=True),
      bench.Case('cam_jax.score (streamed)', lambda: stream(source)['ehr_auc'].to_numpy(), n,
                 group),
  ]


def _heat_stream(model, config, mesh, per_image=None):
  """``run(source)``: Grad-CAM heat maps of a split brought to the host batch by batch (compiled
  once); with ``per_image(heat, mask)``, also applied to every valid lesion image on the host."""
  fn, state, _ = cams.heat_function(model, 'gradcam')
  targets = mesh_lib.same_targets(1, config.batch_size, mesh)

  def run(source):
    out = []
    for batch in data.eval_batches(source, batch_size=config.batch_size,
                                   normalisation=model.normalisation):
      images = mesh_lib.shard_batch({'image': batch['image']}, mesh)['image']
      heat = np.asarray(jax.device_get(fn(state, images, targets)[0]))
      if per_image is None:
        out.append(heat[:, 0, 0])
        continue
      out += [per_image(h, m)['ehr_auc'] for h, m, v in
              zip(heat, np.asarray(batch['mask']), batch['valid']) if v and m.any()]
    return np.asarray(out)

  return run


def _scoring_cases(name, config, source, mesh):
  """Whole-split throughput, each pipeline compiled once (the warmup call) and then streamed."""
  model = models.create(name, image_size=config.image_size, seed=0)
  n, group = len(source), f'{name} {config.image_size}px data set'

  def scored(metrics, **options):
    stream = driver.record_stream(model, metrics=metrics, batch_size=config.batch_size,
                                  mesh=mesh, **options)
    return lambda: stream(source)['prob'].to_numpy()

  faithful = ('deletion_insertion', 'road') if config.road else ('deletion_insertion',)
  heat = _heat_stream(model, config, mesh)
  host = _heat_stream(model, config, mesh, host_metrics.localisation_metrics_numpy)
  cases = [
      bench.Case('gradcam heat maps to host', lambda: heat(source), n, group, reference=True),
      bench.Case('cam_jax.score, localisation metrics on device', scored(('localisation',)), n,
                 group),
      bench.Case('heat maps to host + NumPy metrics per image', lambda: host(source), n, group),
  ]
  if config.faithfulness:
    cases.append(bench.Case(f'cam_jax.score, + {" + ".join(faithful)}',
                            scored(('localisation', *faithful),
                                   deletion_steps=config.deletion_steps), n, group))
  return cases


def _torch_pair(name, config):
  """(torch reference with torch's init, cam_jax model with its weights, NCHW torch batch, the
  same batch NHWC for jax) at ``config.image_size``, ``config.batch_size`` images."""
  import torch  # pylint: disable=g-import-not-at-top

  from cam_jax.models import weights  # pylint: disable=g-import-not-at-top
  from cam_jax.testing import torch_reference  # pylint: disable=g-import-not-at-top
  b, s = config.batch_size, config.image_size
  torch.manual_seed(0)
  ref = torch_reference.build(name, image_size=s).eval()
  model = weights.load_state_dict(
      models.create(name, num_classes=1000, in_channels=3, image_size=s), ref.state_dict()).model
  x = np.random.default_rng(0).normal(size=(b, 3, s, s)).astype(np.float32)
  return ref, model, torch.from_numpy(x), jnp.asarray(x.transpose(0, 2, 3, 1))


def _zoo_cases(name, config, log):
  """cam_jax (jit) and torch (eager) forward of ``name`` with the same torch-initialised weights."""
  import torch  # pylint: disable=g-import-not-at-top
  b, s = config.batch_size, config.image_size
  ref, model, xt, xj = _torch_pair(name, config)
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda st, images: nnx.merge(graphdef, st)(images))

  def torch_forward():
    with torch.no_grad():
      return ref(xt).numpy()

  ours, theirs = np.asarray(forward(state, xj)), torch_forward()
  err = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
  log(f'{name}: max |cam_jax - torch| / max |torch| = {err:.1e}')
  if err > 1e-3:
    raise ValueError(f'{name}: cam_jax and torch logits differ (relative error {err:.1e})')
  group = f'{name} {s}px b{b}'
  return [bench.Case('cam_jax forward (jit)', lambda: forward(state, xj), b, group, reference=True),
          bench.Case(f'torch forward (eager, {torch.get_num_threads()} threads)', torch_forward,
                     b, group)]


def _cams_vs_torch_cases(name, config):
  """cam_jax heat maps (CAM + postprocess, jit) beside pytorch-grad-cam on the same weights."""
  from cam_jax.testing import pytorch_grad_cam_import, torch_reference  # pylint: disable=g-import-not-at-top
  pgc = pytorch_grad_cam_import.import_pytorch_grad_cam()
  from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # pylint: disable=g-import-not-at-top
  b, s = config.batch_size, config.image_size
  ref, model, xt, xj = _torch_pair(name, config)
  classes = np.arange(b) % 1000
  targets = jnp.asarray(classes, jnp.int32)
  layer = models.default_cam_layer(model)
  reshape = torch_reference.token_reshape(model.grid) if hasattr(model, 'grid') else None
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda st, images: nnx.merge(graphdef, st)(images))
  group = f'{name} {s}px b{b}'
  cases = [bench.Case('cam_jax forward (jit)', lambda: forward(state, xj), b, group,
                      reference=True)]
  torch_classes = {'gradcam': 'GradCAM', 'hirescam': 'HiResCAM', 'gradcam++': 'GradCAMPlusPlus',
                   'xgradcam': 'XGradCAM', 'layercam': 'LayerCAM', 'eigencam': 'EigenCAM'}
  for method in split_list(config.methods):
    heat_fn, heat_state, _ = cams.heat_function(model, method, layer)
    cam = getattr(pgc, torch_classes[method])(
        model=ref, target_layers=[torch_reference.submodule(ref, layer)], reshape_transform=reshape)
    torch_targets = [ClassifierOutputTarget(int(c)) for c in classes]
    cases += [bench.Case(f'cam_jax {method} heat maps',
                         functools.partial(heat_fn, heat_state, xj, targets), b, group),
              bench.Case(f'pytorch-grad-cam {method}',
                         functools.partial(cam, input_tensor=xt, targets=torch_targets), b, group)]
  return cases


def _data_cases(config):
  """Prepare throughput (decode + resize, one process) and pipeline throughput per thread count
  on ``config.num_images`` phantom radiographs written as 1024 px JPEG DICOMs."""
  from cam_jax.data import augment, images, phantom  # pylint: disable=g-import-not-at-top
  from cam_jax.testing import xray_files  # pylint: disable=g-import-not-at-top
  n, sizes = config.num_images, [int(s) for s in split_list(config.sizes)]
  made = phantom.generate(phantom.PhantomSpec(image_size=256), 0, 0, n)
  pictures = np.round(made['image'] * 255).astype(np.uint8).repeat(4, 1).repeat(4, 2)
  files = []
  for i, p in enumerate(pictures):
    buf = io.BytesIO()
    xray_files.jpeg_dicom(buf, p, uid=xray_files.siim_uid(i))
    files.append(buf.getvalue())
  decode = lambda: [images.read_dicom(io.BytesIO(b)) for b in files]
  group = f'prepare {n} x 1024 px JPEG DICOM, 1 process'
  out = [bench.Case('decode', lambda: decode()[-1], n, group, reference=True)]
  for s in sizes:
    def resized(s=s):
      return [images.resize_image(a, s) for a in decode()][-1]
    out.append(bench.Case(f'decode + resize to {s} px', resized, n, group))
  masks = made['mask'].repeat(4, 1).repeat(4, 2)
  for s in sizes:
    records = [{'image': images.resize_image(p, s)[..., None],
                'mask': images.resize_mask(m, s, 'area'), 'label': np.int64(label),
                'id': str(i)} for i, (p, m, label) in enumerate(zip(pictures, masks,
                                                                     made['label']))]
    steps = len(records) // config.batch_size
    group = f'pipeline {s} px, batch {config.batch_size}'
    for k, threads in enumerate(int(t) for t in split_list(config.threads)):
      def epoch(threads=threads, records=records):
        batches = data.train_batches(records, batch_size=config.batch_size, seed=0,
                                     normalisation=normalisation.legacy(),  # any: same cost
                                     num_threads=threads, augmenter=augment.CropRotate())
        return [b['image'] for b in batches][-1]
      out.append(bench.Case(f'read + crop_rotate + batch, {threads} threads', epoch,
                            steps * config.batch_size, group, reference=k == 0))
  return out


PARITY_STEPS = 3  # training steps both sides run before the timing; their losses are logged
PARITY_TOLERANCE = 1e-4  # float32, first step: |cam_jax loss - torch loss| / torch loss
TORCH_CASE, OURS_CASE = 'torch train step', 'cam_jax train step (jit)'


def _dtypes(config) -> list[str]:
  dtypes = split_list(config.dtypes)
  unknown = [d for d in dtypes if d not in models.COMPUTE_DTYPES]
  if unknown or not dtypes:
    raise BadInput(f'unknown dtypes {unknown or config.dtypes!r}; choose from: '
                   f'{", ".join(models.COMPUTE_DTYPES)}')
  return dtypes


def train_steps(name, config, dtype: str, mesh):
  """``(ours, theirs)``: zero-argument calls that each run one training step of ``name`` on the
  same fixed batch from the same torch-initialised weights, computing in ``dtype``. ``ours`` is
  cam_jax's jitted step (``init_state`` and ``make_train_step`` with ``config.train``'s AdamW, as
  the training loop builds them) and returns ``(state, loss)``; ``theirs`` is
  ``torch_reference.train_step`` (on the GPU when torch sees one) and returns its loss.

  One logit and one input channel, as the phantom is trained; classes unweighted. VGG's
  classifier dropout is off on both sides: their random masks cannot match. torch flushes
  denormal floats to zero on the CPU from here on, as XLA's CPU backend does: without it the
  float32 torch step ran several times slower once the gradients of a well-fitted batch became
  denormal.
  """
  import torch  # pylint: disable=g-import-not-at-top

  from cam_jax.models import weights  # pylint: disable=g-import-not-at-top
  from cam_jax.testing import torch_reference  # pylint: disable=g-import-not-at-top
  b, s, tc = config.batch_size, config.image_size, config.train
  mesh_lib.check_batch_size(b, mesh)
  torch.set_flush_denormal(True)
  torch.manual_seed(0)
  ref = torch_reference.build(name, num_classes=1, image_size=s, in_channels=1)
  overrides = {}
  if name.startswith('vgg'):
    overrides['dropout'] = 0.0
    for module in ref.modules():
      if isinstance(module, torch.nn.Dropout):
        module.p = 0.0
  model = weights.load_state_dict(
      models.create(name, image_size=s, dtype=models.COMPUTE_DTYPES[dtype], **overrides),
      ref.state_dict(), strict_head=True).model
  total = PARITY_STEPS + 1 + config.repeats  # the steps this bench runs; the schedule spans them
  tx = optim.optimizer(tc, total)
  loss = step_lib.Loss(step_lib.ClassWeights((1.0, 1.0)))
  graphdef, state, shardings = step_lib.init_state(model, tx, mesh, tc.param_sharding)
  del model
  jax_step = step_lib.make_train_step(graphdef, tx, loss, mesh, shardings)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(b, s, s, 1)).astype(np.float32)
  y = (np.arange(b) % 2).astype(np.int32)
  batch = mesh_lib.shard_batch({'image': x, 'label': y}, mesh)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch_step = torch_reference.train_step(ref.to(device), tc, total, getattr(torch, dtype))
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)
  yt = torch.from_numpy(y).to(device)
  held = [state]

  def ours():
    held[0], metrics = jax_step(held[0], batch)
    return held[0], metrics['loss']

  def theirs():
    return torch_step(xt, yt).cpu().numpy()  # the copy waits for the step's queued kernels

  return ours, theirs


def _train_cases(name, config, dtype, mesh, log):
  """cam_jax's train step beside torch's in ``dtype`` (torch the reference), after both run
  ``PARITY_STEPS`` steps. The first step's loss (the same weights and batch) must agree within
  ``PARITY_TOLERANCE`` in float32; the later ones are logged: Adam's first updates are close to
  ``lr * sign(gradient)``, so gradients that differ by rounding near zero move them apart, and
  bfloat16 rounds differently on each side."""
  import torch  # pylint: disable=g-import-not-at-top
  ours, theirs = train_steps(name, config, dtype, mesh)
  mine = [float(ours()[1]) for _ in range(PARITY_STEPS)]
  torchs = [float(theirs()) for _ in range(PARITY_STEPS)]
  first = abs(mine[0] - torchs[0]) / abs(torchs[0])
  log(f'{name} {dtype}: losses of the first {PARITY_STEPS} steps cam_jax '
      f'{", ".join(f"{x:.6g}" for x in mine)}, torch {", ".join(f"{x:.6g}" for x in torchs)}; '
      f'first step |cam_jax - torch| / torch = {first:.1e}')
  if dtype == 'float32' and first > PARITY_TOLERANCE:
    raise ValueError(f'{name}: cam_jax and torch losses differ on the same weights and batch '
                     f'(relative error {first:.1e})')
  where = ('cuda' if torch.cuda.is_available()
           else f'cpu, {torch.get_num_threads()} threads')
  b = config.batch_size
  group = f'{name} {config.image_size}px b{b} {dtype}'
  return [bench.Case(OURS_CASE, ours, b, group),
          bench.Case(f'{TORCH_CASE} (eager, {where})', theirs, b, group, reference=True)]


def phantom_loop(name, config, workdir: str, log=print) -> dict:
  """The real training loop (``cam_jax.train.loop.train`` with ``config.train``) of ``name`` on
  the phantom (``config.data``) in a fresh directory: images/s, step time and input-wait
  fraction over its ``window`` log rows after the first, which holds the compilation. Its
  ``train_log.jsonl`` is kept in ``workdir`` as ``loop_<name>.jsonl``."""
  tc = config.train
  train_src, val_src = (data.open_split(config.data, split, config.data_dir)
                        for split in ('train', 'validation'))
  recipe = checkpoint.recipe(name, 1, config.data.image_size, tc.seed)
  with tempfile.TemporaryDirectory() as run_dir:
    loop.train(recipe, tc, train_src, val_src, workdir=run_dir, log=log)
    with open(os.path.join(run_dir, observe.JSONL)) as f:
      text = f.read()
  with open(os.path.join(workdir, f'loop_{name}.jsonl'), 'w') as f:
    f.write(text)
  windows = [r for r in map(json.loads, text.splitlines()) if r['kind'] == 'window']
  if len(windows) < 2:
    raise BadInput(f'the phantom loop of {name} logged {len(windows)} throughput window(s); it '
                   'needs two or more (the first holds compilation): raise data.num_train or '
                   'lower train.log_every_steps')
  steps = [w['step'] - v['step'] for v, w in zip(windows, windows[1:])]
  seconds = [n * w['step_time_s'] for n, w in zip(steps, windows[1:])]
  waited = sum(t * w['input_wait_fraction'] for t, w in zip(seconds, windows[1:]))
  return {'model': name, 'dtype': tc.dtype, 'image_size': config.data.image_size,
          'batch_size': tc.batch_size, 'steps': sum(steps),
          'images_per_s': sum(steps) * tc.batch_size / sum(seconds),
          'step_time_s': sum(seconds) / sum(steps), 'input_wait_fraction': waited / sum(seconds)}


def train_markdown(table: pd.DataFrame, loops: pd.DataFrame, config) -> str:
  """Per model, one row: cam_jax and torch training images/s and their ratio in each dtype side
  by side, then the phantom loop's images/s and input-wait fraction."""
  dtypes = _dtypes(config)
  head = ['model'] + [f'{d} {c}' for d in dtypes for c in ('cam_jax', 'torch', 'cam_jax/torch')]
  head += [f'loop ({config.train.dtype}) images/s', 'loop input wait']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for name in split_list(config.models):
    cells = [name]
    for d in dtypes:
      group = table[table['group'] == f'{name} {config.image_size}px b{config.batch_size} {d}']
      ours = group[group['case'] == OURS_CASE].iloc[0]
      torch_row = group[group['case'].str.startswith(TORCH_CASE)].iloc[0]
      cells += [f"{ours['items_per_s']:.2f}", f"{torch_row['items_per_s']:.2f}",
                f"{ours['ratio']:.2f}x"]
    row = loops[loops['model'] == name].iloc[0]
    cells += [f"{row['images_per_s']:.2f}", f"{100 * row['input_wait_fraction']:.1f}%"]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def cases(config, log=print) -> list[bench.Case]:
  """Every case of ``config.suite`` for each of ``config.models``."""
  names = split_list(config.models)
  if config.suite not in SUITES:
    raise BadInput(f'unknown bench suite {config.suite!r}; choose one of: {", ".join(SUITES)}')
  out = []
  if config.suite == 'zoo':
    for name in names:
      out += _zoo_cases(name, config, log)
  elif config.suite == 'cams_vs_torch':
    for name in names:
      out += _cams_vs_torch_cases(name, config)
  elif config.suite == 'data':
    out += _data_cases(config)
  elif config.suite == 'peer':
    out += peer.suite(config)[0]
  elif config.suite == 'train':
    # jax and torch share an accelerator: unless told otherwise, jax takes memory as it needs
    # it rather than most of it up front (read when jax first starts its backend).
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    mesh = mesh_lib.make_mesh(fsdp=config.train.fsdp_devices)
    for name in names:
      for dtype in _dtypes(config):
        out += _train_cases(name, config, dtype, mesh, log)
  else:
    mesh = mesh_lib.make_mesh()
    if config.data.image_size != config.image_size:  # models are built for config.image_size
      raise BadInput(f'config.image_size is {config.image_size} but config.data.image_size is '
                     f'{config.data.image_size}: the data set cases stream the phantom at its '
                     'size, so set both (e.g. --config.image_size=224 '
                     '--config.data.image_size=224)')
    source = data.open_split(config.data, 'test', config.data_dir)
    for name in names:
      if config.suite == 'cams':
        for dtype, b in _sweep(config):
          out += _batch_cases(name, config, mesh, dtype, b)
        for dtype in dict.fromkeys(d for d, _ in _sweep(config)):
          out += _dataset_cases(name, config, source, mesh, dtype)
      else:
        out += _scoring_cases(name, config, source, mesh)
  return out


def peak_memory() -> str:
  """The first device's high-water mark of memory in use, as the runtime reports it ('not
  reported' where it does not, as on CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return 'not reported' if peak is None else f'{peak / 2 ** 30:.2f} GiB'


def _run_parts(config, workdir: str, log) -> str:
  """Suite ``accelerator``: every suite named in ``config.parts``, each with its own sub-config
  ``config.<part>`` and workdir ``<workdir>/<part>``, one after another in this process; their
  tables under one heading each, with the device's memory high-water mark after each."""
  sections = []
  for part in split_list(config.parts):
    if part not in config:
      raise BadInput(f'config.parts names {part!r} but the config has no config.{part}')
    text = run_suite(config[part], os.path.join(workdir, part), log=log)
    sections.append(f'## {part}\n\n{text}\n\nDevice memory high-water mark after {part}: '
                    f'{peak_memory()}')
  return '\n\n'.join(sections)


def run_suite(config, workdir: str, log=print) -> str:
  """Times every case of the suite; writes ``bench.csv`` and ``bench.md`` into ``workdir`` and
  returns the markdown table. Suite ``train`` then runs ``phantom_loop`` per model, writes
  ``loop.csv`` and adds ``train_markdown``'s table. Suite ``peer`` then checks the agreement of
  the last timed calls (``cam_jax.bench.peer``), writes ``agreement.csv``, adds
  ``peer.markdown``'s tables and raises ValueError, after writing them, where the two ways
  disagree."""
  check_packages(config)
  os.makedirs(workdir, exist_ok=True)
  if config.suite == 'accelerator':
    text = _run_parts(config, workdir, log)
    with open(os.path.join(workdir, 'bench.md'), 'w') as f:
      f.write(text + '\n')
    return text
  agree = None
  if config.suite == 'peer':
    suite_cases, agree = peer.suite(config)
  else:
    suite_cases = cases(config, log)
  log(f'devices: {jax.device_count()} x {jax.devices()[0].device_kind}')
  table = bench.run(suite_cases, repeats=config.repeats, log=log)
  del suite_cases  # their train states, before the phantom loops build theirs
  table.to_csv(os.path.join(workdir, 'bench.csv'), index=False)
  text = bench.markdown(table)
  if config.suite == 'train':
    loops = pd.DataFrame([phantom_loop(name, config, workdir, log)
                          for name in split_list(config.models)])
    loops.to_csv(os.path.join(workdir, 'loop.csv'), index=False)
    text += '\n\n' + train_markdown(table, loops, config)
  if agree is not None:
    agreement = agree()
    agreement.to_csv(os.path.join(workdir, 'agreement.csv'), index=False)
    text += '\n\n' + peer.markdown(table, agreement)
  with open(os.path.join(workdir, 'bench.md'), 'w') as f:
    f.write(text + '\n')
  if agree is not None and not agreement['pass'].all():
    failed = agreement[~agreement['pass']]
    raise ValueError('the peer pipeline and cam_jax disagree beyond their tolerances on: '
                     + ', '.join(f'{m} {q}' for m, q in zip(failed['model'], failed['quantity'])))
  return text
