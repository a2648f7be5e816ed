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
and batching) per grain thread count.
"""

import functools
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cam_jax import cams, data, models
from cam_jax.bench import harness as bench
from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.core.text import split_list
from cam_jax.scoring import driver
from cam_jax.testing import host_metrics
from cam_jax.train import loop, step as step_lib

SUITES = ('cams', 'scoring', 'zoo', 'cams_vs_torch', 'data')


def _batch_cases(name, config, mesh):
  model = models.create(name, image_size=config.image_size, seed=0)
  b, s = config.batch_size, config.image_size
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
  group = f'{name} b{b}'
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


def _dataset_cases(name, config, source, mesh):
  model = models.create(name, image_size=config.image_size, seed=0)
  n, group = len(source), f'{name} data set'
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
    for batch in data.eval_batches(source, batch_size=config.batch_size):
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


def _torch_module(ref, layer: str):
  """The submodule of a torch reference at a cam_jax layer name ('layer4', 'blocks.11.norm1')."""
  module = ref
  for part in layer.split('.'):
    module = module[int(part)] if part.isdigit() else getattr(module, part)
  return module


def _cams_vs_torch_cases(name, config):
  """cam_jax heat maps (CAM + postprocess, jit) beside pytorch-grad-cam on the same weights."""
  from cam_jax.testing import pytorch_grad_cam_import  # pylint: disable=g-import-not-at-top
  pgc = pytorch_grad_cam_import.import_pytorch_grad_cam()
  from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # pylint: disable=g-import-not-at-top
  b, s = config.batch_size, config.image_size
  ref, model, xt, xj = _torch_pair(name, config)
  classes = np.arange(b) % 1000
  targets = jnp.asarray(classes, jnp.int32)
  layer = models.default_cam_layer(model)
  reshape = None
  if hasattr(model, 'grid'):
    g = model.grid
    reshape = lambda t: t[:, 1:, :].reshape(t.shape[0], g, g, t.shape[-1]).permute(0, 3, 1, 2)
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda st, images: nnx.merge(graphdef, st)(images))
  group = f'{name} {s}px b{b}'
  cases = [bench.Case('cam_jax forward (jit)', lambda: forward(state, xj), b, group,
                      reference=True)]
  torch_classes = {'gradcam': 'GradCAM', 'hirescam': 'HiResCAM', 'gradcam++': 'GradCAMPlusPlus',
                   'xgradcam': 'XGradCAM', 'layercam': 'LayerCAM', 'eigencam': 'EigenCAM'}
  for method in split_list(config.methods):
    heat_fn, heat_state, _ = cams.heat_function(model, method, layer)
    cam = getattr(pgc, torch_classes[method])(model=ref, target_layers=[_torch_module(ref, layer)],
                                              reshape_transform=reshape)
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
                                     num_threads=threads, augmenter=augment.CropRotate())
        return [b['image'] for b in batches][-1]
      out.append(bench.Case(f'read + crop_rotate + batch, {threads} threads', epoch,
                            steps * config.batch_size, group, reference=k == 0))
  return out


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
  else:
    mesh = mesh_lib.make_mesh()
    source = data.open_split(config.data, 'test', config.data_dir)
    for name in names:
      if config.suite == 'cams':
        out += _batch_cases(name, config, mesh) + _dataset_cases(name, config, source, mesh)
      else:
        out += _scoring_cases(name, config, source, mesh)
  return out


def run_suite(config, workdir: str, log=print) -> str:
  """Times every case of the suite; writes ``bench.csv`` and ``bench.md`` into ``workdir`` and
  returns the markdown table."""
  os.makedirs(workdir, exist_ok=True)
  suite_cases = cases(config, log)
  log(f'devices: {jax.device_count()} x {jax.devices()[0].device_kind}')
  table = bench.run(suite_cases, repeats=config.repeats, log=log)
  table.to_csv(os.path.join(workdir, 'bench.csv'), index=False)
  text = bench.markdown(table)
  with open(os.path.join(workdir, 'bench.md'), 'w') as f:
    f.write(text + '\n')
  return text
