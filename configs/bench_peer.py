"""Benchmark: the whole scoring job as users write it today beside ``cam_jax.score``.

  cam_jax bench --config=configs/bench_peer.py --workdir=runs/bench_peer

Per model (built in torch with its source library's init, the same weights loaded into cam_jax),
the phantom's test split streamed both ways: pytorch-grad-cam's Grad-CAM, Quantus 0.6's
PointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy, TopKIntersection and AUC and EHR-AUC
in NumPy (the peer, the ratio's reference), and ``cam_jax.score`` with its localisation metrics;
then the agreement of the two in the same run (``cam_jax.bench.peer``). Needs the test extra,
pytorch-grad-cam and Quantus (the README's test command installs them). ``:tiny`` runs in
seconds (what the tests run).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.suite = 'peer'
  c.models = 'resnet50,vgg16,vit_s16' if arg != 'tiny' else 'resnet18'
  c.image_size = 224 if arg != 'tiny' else 64
  c.batch_size = 16 if arg != 'tiny' else 8  # tests run on 8 host devices
  c.repeats = 3 if arg != 'tiny' else 1
  c.data = presets.bench_data_config(arg, c.image_size, c.batch_size)
  c.data.num_test = 32 if arg != 'tiny' else 16  # images streamed both ways per call
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  return c
