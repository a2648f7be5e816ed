"""Benchmark: whole-data-set scoring with every heat-map metric on, against Grad-CAM alone.

  cam_jax bench --config=configs/bench_scoring.py --workdir=runs/bench_scoring

Per model, streaming the phantom test split in batches: Grad-CAM heat maps brought to the host
(the reference: what a user gets without metrics); ``cam_jax.score`` with the localisation
metrics fused on device; the host-side alternative (the same heat maps, then the same metrics
in NumPy per image, as the reference libraries compute them); and ``cam_jax.score`` with the
faithfulness metrics (RISE deletion/insertion; ROAD with ``--config.road=True``), whose cost is
extra forward passes. ``:tiny`` runs in seconds (what the tests run).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.suite = 'scoring'
  c.models = 'vgg_tiny,resnet_tiny,vit_tiny' if arg != 'tiny' else 'resnet_tiny'
  c.image_size = 128 if arg != 'tiny' else 32
  c.batch_size = 64 if arg != 'tiny' else 8
  c.repeats = 5 if arg != 'tiny' else 1
  c.deletion_steps = 16 if arg != 'tiny' else 2
  c.faithfulness = True  # time the deletion/insertion case (34 forward passes per image)
  c.road = False  # ROAD's conjugate-gradient imputation: minutes per model on a CPU
  c.data = presets.bench_data_config(arg, c.image_size, c.batch_size)
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  return c
