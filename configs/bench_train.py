"""Benchmark: training throughput at 224 px, cam_jax beside torch, and the loop's input wait.

  cam_jax bench --config=configs/bench_train.py --workdir=runs/bench_train

Per model and compute dtype (``dtypes``, side by side): cam_jax's jitted train step (the
training loop's ``init_state`` and ``make_train_step``, with ``train``'s AdamW) beside a torch
training step of the same architecture, torch-initialised weights, batch, loss and optimiser
(``cam_jax.testing.torch_reference``; needs the test extra), both on one fixed batch. Then, per
model, the real training loop (``cam_jax.train.loop.train`` with ``train``) on the phantom at the
same size, whose ``window`` log rows give images/s and the fraction of step time spent waiting
for input. The same command runs on an accelerator (torch on CUDA when it sees one); ``:large``
sizes it for one. ``:tiny`` runs in seconds (what the tests run).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = ml_collections.ConfigDict()
  c.suite = 'train'
  c.models = {'': 'resnet50,vgg16_bn,vit_s16', 'tiny': 'resnet18',
              'large': 'resnet50,vit_b16'}[arg]
  c.dtypes = 'float32,bfloat16'  # compute dtypes of both sides; parameters stay float32
  c.image_size = 224 if arg != 'tiny' else 64
  c.batch_size = {'': 4, 'tiny': 2, 'large': 128}[arg]
  c.repeats = {'': 3, 'tiny': 1, 'large': 10}[arg]
  window = {'': 3, 'tiny': 2, 'large': 20}[arg]  # steps per throughput window of the loop
  c.train = presets.train_config(arg)
  c.train.batch_size = c.get_ref('batch_size')
  c.train.eval_batch_size = c.get_ref('batch_size')
  c.train.epochs = 1
  c.train.warmup_epochs = 0.0  # the timed steps start at the peak learning rate
  c.train.learning_rate = 1e-4  # from scratch at 224 px, without warmup: 1e-3 diverges
  c.train.dtype = 'float32' if arg != 'large' else 'bfloat16'  # the phantom loop's
  c.train.log_every_steps = window
  c.train.checkpoint_every_steps = 0
  # The phantom loop: three windows, the first (compilation) left out of its figures.
  c.data = presets.data_config(arg)
  c.data.image_size = c.get_ref('image_size')
  c.data.num_train = c.get_ref('batch_size') * 3 * window
  c.data.num_validation = c.data.num_test = c.get_ref('batch_size')
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  return c
