"""Benchmark: everything one accelerator run should measure, in one process.

  cam_jax bench --config=configs/bench_accelerator.py --workdir=runs/bench_accelerator

Parts (``suite='accelerator'``, ``cam_jax.bench.suites``), each its own suite and sub-config,
the device's memory high-water mark after each:
- ``cams``: per zoo model at 224 px (ResNet-50, VGG-16-BN, ViT-B/16) in float32 and bfloat16:
  forward, Grad-CAM raw maps and the fused scoring step (Grad-CAM, postprocess, every
  localisation metric) on a device-resident batch; then ``cam_jax.score`` streaming the test
  split beside forward-only over the same stream;
- ``sweep``: the same for ResNet-50 in bfloat16 over batch sizes 32 to 512;
- ``peer``: the whole scoring job beside pytorch-grad-cam + Quantus + NumPy on the host, with
  their agreement (``configs/bench_peer.py``; the host-bound pipeline users run today).
Meant to fit in 8 minutes on one GPU; not yet run on one. ``:tiny`` runs the same parts at toy
sizes on a CPU (what the tests run).
"""

import ml_collections

from cam_jax import presets


def _part(arg, suite, models, image_size, batch_size, **fields):
  """One part's config: the fields its suite reads (as ``configs/bench.py``'s and
  ``configs/bench_peer.py``'s), the phantom's test split at ``image_size``."""
  c = ml_collections.ConfigDict({'suite': suite, 'models': models, 'image_size': image_size,
                                 'batch_size': batch_size, 'repeats': 2 if arg == 'tiny' else 5,
                                 'data_dir': '', **fields})
  c.data = presets.bench_data_config(arg, image_size, batch_size)
  return c


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  tiny = arg == 'tiny'
  size = 32 if tiny else 224
  c = ml_collections.ConfigDict()
  c.suite = 'accelerator'
  c.parts = 'cams,sweep,peer'
  c.cams = _part(arg, 'cams', 'resnet_tiny' if tiny else 'resnet50,vgg16_bn,vit_b16', size,
                 8 if tiny else 128, methods='', dtypes='float32,bfloat16',
                 batch_sizes='8' if tiny else '128')
  c.sweep = _part(arg, 'cams', 'resnet_tiny' if tiny else 'resnet50', size, 16 if tiny else 512,
                  methods='', dtypes='bfloat16', batch_sizes='8,16' if tiny else '32,128,512')
  c.peer = _part(arg, 'peer', 'resnet18' if tiny else 'resnet50,vgg16,vit_s16',
                 64 if tiny else 224, 8 if tiny else 16)
  c.peer.data.num_test = 16 if tiny else 32  # images streamed both ways per call
  return c
