"""Benchmarks: ``python -m launch.bench --config=configs/bench.py --workdir=DIR``.

Per model: forward-only, Grad-CAM (raw maps) and the fused scoring step (Grad-CAM, postprocess
and every localisation metric) on one device-resident batch; then whole-data-set throughput of
``cam_jax.score`` streaming the phantom test split against forward-only over the same stream.
Writes ``bench.csv`` and ``bench.md`` into the workdir.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx
from ml_collections import config_flags

import cam_jax
from cam_jax import bench, data, models
from cam_jax.scoring import driver
from cam_jax.train import loop, mesh as mesh_lib, step as step_lib
from launch import common

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Bench config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


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
  score_step, state, layer = driver.make_score_step(model, 'gradcam', None, (s, s), mesh)
  from cam_jax import cams  # pylint: disable=g-import-not-at-top
  cam_fn, cam_state, _ = cams.cam_function(model)
  group = f'{name} b{b}'
  return [
      bench.Case('forward', lambda: forward(params, rest, images), b, group, reference=True),
      bench.Case(f'grad-cam raw ({layer})', lambda: cam_fn(cam_state, images, targets), b, group),
      bench.Case('grad-cam + postprocess + metrics',
                 lambda: score_step(state, images, masks, targets), b, group),
  ]


def _dataset_cases(name, config, source, mesh):
  model = models.create(name, image_size=config.image_size, seed=0)
  n, group = len(source), f'{name} data set'
  kw = dict(batch_size=config.batch_size, mesh=mesh)
  return [
      bench.Case('forward (streamed)', lambda: loop.predict(model, source, **kw)[1], n, group,
                 reference=True),
      bench.Case('cam_jax.score (streamed)',
                 lambda: cam_jax.score(model, source, progress=False, n_resamples=1,
                                       **kw).records['ehr_auc'].to_numpy(), n, group),
  ]


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  mesh = mesh_lib.make_mesh()
  source = data.open_split(config.data, 'test', config.data_dir or os.path.join(workdir, 'data'))
  cases = []
  for name in [m.strip() for m in config.models.split(',')]:
    cases += _batch_cases(name, config, mesh) + _dataset_cases(name, config, source, mesh)
  common.log(f'devices: {jax.device_count()} x {jax.devices()[0].device_kind}')
  table = bench.run(cases, repeats=config.repeats, log=common.log)
  table.to_csv(os.path.join(workdir, 'bench.csv'), index=False)
  text = bench.markdown(table)
  with open(os.path.join(workdir, 'bench.md'), 'w') as f:
    f.write(text + '\n')
  print(text)


if __name__ == '__main__':
  common.run(main)
