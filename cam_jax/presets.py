"""Settings shared by the phantom configs: the data set and the training recipe.

``arg`` sizes them: '' is the CPU-sized embedded default (the README's study, minutes on two
cores), 'tiny' runs in seconds (tests), 'large' is for an accelerator.
"""

import ml_collections

from cam_jax.core.errors import BadInput

SIZES = ('', 'tiny', 'large')


def check_arg(arg: str) -> str:
  if arg not in SIZES:
    raise BadInput(f'unknown config argument {arg!r}; choose one of: '
                   f'{", ".join(repr(s) for s in SIZES)}')
  return arg


def data_config(arg: str = '') -> ml_collections.ConfigDict:
  """The phantom data set (``cam_jax.data.phantom.PhantomSpec`` plus split sizes and seed)."""
  c = ml_collections.ConfigDict()
  c.name = 'phantom'
  c.image_size = {'': 128, 'tiny': 32, 'large': 256}[arg]
  c.num_train = {'': 2400, 'tiny': 64, 'large': 20000}[arg]
  c.num_validation = {'': 400, 'tiny': 32, 'large': 2000}[arg]
  c.num_test = {'': 500, 'tiny': 32, 'large': 4000}[arg]
  c.positive_rate = 0.5
  c.tube_rate_pos = 0.0
  c.tube_rate_neg = 0.0
  c.marker_rate_pos = 0.0
  c.marker_rate_neg = 0.0
  c.noise = 0.02
  c.seed = 0
  return c


def bench_data_config(arg: str, image_size: int, batch_size: int) -> ml_collections.ConfigDict:
  """The phantom data set of a benchmark that streams only the test split: 512 images (16 for
  'tiny') at ``image_size``, the other splits one batch each."""
  c = data_config(arg)
  c.num_train = c.num_validation = batch_size
  c.num_test = 512 if arg != 'tiny' else 16
  c.image_size = image_size
  return c


def train_config(arg: str = '') -> ml_collections.ConfigDict:
  """The training recipe (``cam_jax.train``): optimiser, schedule, loss, precision, checkpoints,
  logging."""
  c = ml_collections.ConfigDict()
  c.epochs = {'': 6, 'tiny': 1, 'large': 40}[arg]
  c.batch_size = {'': 32, 'tiny': 16, 'large': 128}[arg]  # global: every device and process
  c.eval_batch_size = {'': 64, 'tiny': 16, 'large': 256}[arg]
  c.optimizer = 'adamw'  # or 'sgd' (heavy-ball momentum)
  c.momentum = 0.9       # sgd only
  c.learning_rate = 1e-3
  c.warmup_epochs = 1.0  # linear warmup, then cosine decay to 1% of learning_rate
  c.weight_decay = 0.05  # decoupled; never on biases, norm scales, position embeddings, tokens
  c.ema_decay = 0.0      # > 0: an exponential moving average of the weights is evaluated/exported
  c.loss = 'cross_entropy'  # or 'focal' (Lin et al., ICCV 2017)
  c.focal_gamma = 2.0
  c.class_weighting = True  # weights n / (K n_c); for focal loss they play alpha's part
  c.dtype = 'float32'    # compute dtype: 'float32' or 'bfloat16' (parameters stay float32)
  c.accum_steps = 1      # micro-batches per optimiser step (batch_size / accum_steps each)
  c.param_sharding = 'replicate' if arg != 'large' else 'fsdp'  # cam_jax.train.sharding
  c.fsdp_devices = 1 if arg != 'large' else -1  # the mesh's fsdp axis (-1: every device)
  c.checkpoint_every_steps = {'': 0, 'tiny': 0, 'large': 500}[arg]  # 0: at epoch ends only
  c.keep_checkpoints = 2  # the latest K, and the best by validation ROC-AUC besides
  c.log_every_steps = 25  # JSONL / TensorBoard rows and a plain line when not on a terminal
  c.seed = 0
  return c
