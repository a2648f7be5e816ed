"""Settings shared by the configs: the data sets, the training recipe and the study.

``arg`` sizes them: '' is the CPU-sized embedded default (the README's study, minutes on two
cores), 'tiny' runs in seconds (tests), 'large' is for an accelerator. The train and score
configs also take a data set's name in their argument (``check_data_arg``: 'siim',
'tiny,siim').
"""

import ml_collections

from cam_jax.core.errors import BadInput

SIZES = ('', 'tiny', 'large')


def check_arg(arg: str) -> str:
  if arg not in SIZES:
    raise BadInput(f'unknown config argument {arg!r}; choose one of: '
                   f'{", ".join(repr(s) for s in SIZES)}')
  return arg


def check_data_arg(arg: str) -> tuple[str, str]:
  """``(size, data set)`` from a config argument of a size, a data set name or both,
  comma-separated: '' or 'tiny' (the phantom), 'siim', 'tiny,siim', 'large,nih'."""
  parts = [p.strip() for p in arg.split(',')] if arg else []
  sizes = [p for p in parts if p in SIZES]
  names = [p for p in parts if p in ('phantom',) + tuple(REAL_DATA)]
  unknown = [p for p in parts if p not in sizes and p not in names]
  if unknown or len(sizes) > 1 or len(names) > 1:
    raise BadInput(f'bad config argument {arg!r}: give at most one size ('
                   f'{", ".join(repr(s) for s in SIZES)}) and at most one data set (phantom, '
                   f'{", ".join(REAL_DATA)}), comma-separated, e.g. \'tiny,siim\'')
  return (sizes or [''])[0], (names or ['phantom'])[0]


# The real sources (``cam_jax.data.sources``) and the fields only each of them has. encoding:
# one of cam_jax.data.codecs.ENCODINGS: 'relative' (SIIM's), 'absolute' (0-based), 'absolute1'
# (1-based), or 'auto' (decided per file from the rows; an error when they cannot tell).
REAL_DATA = {
    'siim': {'labels': '', 'encoding': 'auto'},  # labels '': train-rle.csv or stage_2_train.csv
    'siim_png': {},
    'nih': {'finding': 'Pneumothorax'},  # Infiltrate (the box list's name) = Infiltration
    'chexlocalize': {'task': 'Pneumothorax'},
    'csv': {'labels': 'labels.csv', 'encoding': 'auto'},
}


def data_config(arg: str = '', name: str = 'phantom') -> ml_collections.ConfigDict:
  """The phantom data set (``cam_jax.data.phantom.PhantomSpec`` plus split sizes and seed), or
  the real source ``name`` (one of ``REAL_DATA``), prepared from ``manual_dir``."""
  if name != 'phantom':
    return _real_data_config(arg, name)
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


def _real_data_config(arg: str, name: str) -> ml_collections.ConfigDict:
  if name not in REAL_DATA:
    raise BadInput(f'unknown data set {name!r}; choose one of: phantom, {", ".join(REAL_DATA)}')
  c = ml_collections.ConfigDict()
  c.name = name
  c.manual_dir = ''  # the downloaded files (the builder's MANUAL_DOWNLOAD_INSTRUCTIONS say how)
  c.image_size = {'': 224, 'tiny': 32, 'large': 512}[arg]  # resized once, when prepared
  c.mask_resize = 'area'  # 'area': box-filtered, >= 0.5 kept; or 'nearest'
  c.validation_fraction = 0.1  # of the records, by whole patient / duplicate groups
  c.test_fraction = 0.1
  c.seed = 0  # of the split assignment
  c.split_file = ''  # a splits.csv (id, split) to reuse instead of drawing one
  c.update(REAL_DATA[name])
  c.strict = False  # True: the first quarantined record is an error
  c.num_workers = 0  # decoding processes; 0: one per core
  c.progress = True  # a progress bar while decoding
  return c


def prepare_config(arg: str, name: str) -> ml_collections.ConfigDict:
  """A ``configs/data/<name>.py`` config: the data set's fields at the top level (so
  ``--config.manual_dir=DIR``) plus ``data_dir``."""
  c = data_config(check_arg(arg), name)
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  return c


def bench_data_config(arg: str, image_size: int, batch_size: int) -> ml_collections.ConfigDict:
  """The phantom data set of a benchmark that streams only the test split: 512 images (16 for
  'tiny') at ``image_size``, the other splits one batch each."""
  c = data_config(arg)
  c.num_train = c.num_validation = batch_size
  c.num_test = 512 if arg != 'tiny' else 16
  c.image_size = image_size
  return c


def study_config(arg: str, data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A study (``cam_jax.study``) of the zoo on ``data``: everything past the data source is the
  same for the phantom (``configs/study_phantom.py``) and a real set (``configs/study_siim.py``)."""
  c = ml_collections.ConfigDict()
  c.data = data
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  c.models = 'vgg_tiny,resnet_tiny,vit_tiny' if arg != 'large' else 'vgg16_bn,resnet50,vit_s16'
  c.num_classes = 1
  c.init_from = ''  # pretrained weights per model: 'resnet50=/w/r50.pth,vit_s16=/w/vit.npz'
  c.train = train_config(arg, data.name)
  # Per-model changes to c.train: the ViT learns the lesion later than the CNNs (its validation
  # ROC-AUC jumps after about 5 epochs), so it trains twice as long.
  c.train_overrides = ml_collections.ConfigDict(
      {'vit_tiny': {'epochs': 2 * c.train.epochs}} if arg != 'large' else {})
  # method: one of cam_jax.cams.METHODS; layer '' = each model's default; target +1 explains
  # the positive finding; aug_smooth / eigen_smooth as in pytorch-grad-cam.
  c.cam = ml_collections.ConfigDict({'method': 'gradcam', 'layer': '', 'target': 1,
                                     'aug_smooth': False, 'eigen_smooth': False})
  # metrics: groups of cam_jax.scoring.driver.METRIC_GROUPS (ROAD's imputation is slow on a
  # CPU: the accelerator config adds it); tune_split: where the IoU threshold is tuned
  # (CheXlocalize), '' for none; deletion_steps: RISE's curve has deletion_steps + 1 points.
  # fill: what deletion / insertion put in place of removed pixels (metrics.faithfulness
  # DELETION_FILLS), 'texture' because 'mean', 'blur' and 'reference' create the lesion cue
  # themselves on the phantom (scoring.fill_check on the 247 healthy test images, vgg_tiny after
  # 3 epochs: a random-order deletion raises the probability of the finding by 0.85, 0.68 and
  # 0.29 on average, 'texture' by 0.05 [0.04, 0.06]); fill_split: whose healthy images are the
  # references; fill_check: the fills scoring.fill_check compares per model ('' to skip).
  c.score = ml_collections.ConfigDict({
      'batch_size': c.train.eval_batch_size, 'n_resamples': 2000 if arg != 'tiny' else 200,
      'baseline_grid': 8, 'overlay_count': 6, 'seed': 0,
      'metrics': 'localisation,deletion_insertion' + (',road' if arg == 'large' else ''),
      'tune_split': 'validation', 'deletion_steps': 16 if arg != 'tiny' else 4,
      'fill': 'texture', 'fill_split': 'validation', 'fill_check': 'mean,blur,reference,texture'})
  # Model-parameter randomisation (Adebayo et al. 2018) on the first n_images test images:
  # mode 'cascading' or 'independent', '' to skip.
  c.sanity = ml_collections.ConfigDict({'mode': 'cascading',
                                        'n_images': 64 if arg != 'tiny' else 16})
  # Repeatability (Arun et al. 2021): these models are trained a second time with seed + 1 and
  # their heat maps compared; reproducibility compares every pair of models.
  c.repeat_models = 'resnet_tiny' if arg != 'large' else ''
  return c


def train_config(arg: str = '', data_name: str = 'phantom') -> ml_collections.ConfigDict:
  """The training recipe (``cam_jax.train``): optimiser, schedule, loss, precision, checkpoints,
  logging; augmented for the data set ``data_name`` (the phantom's shifts, or crops and
  rotations for real radiographs)."""
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
  # 'shift' (translation, brightness / contrast: the phantom's) or 'crop_rotate' (random resized
  # crop, small rotation, brightness / contrast: real radiographs); cam_jax.data.augment
  c.augment = 'shift' if data_name == 'phantom' else 'crop_rotate'
  c.hflip = False  # crop_rotate only; laterality matters in chest X-rays
  # Input normalisation, stored in the checkpoint's recipe (cam_jax.train.loop.named_normalisation):
  # 'auto' (ImageNet's with init_from, else 'dataset'), 'dataset' (the training split's per-channel
  # mean / std), 'imagenet', or 'MEAN,STD' on [0, 1] pixels.
  c.normalisation = 'auto'
  c.dtype = 'float32'    # compute dtype: 'float32' or 'bfloat16' (parameters stay float32)
  c.accum_steps = 1      # micro-batches per optimiser step (batch_size / accum_steps each)
  c.param_sharding = 'replicate' if arg != 'large' else 'fsdp'  # cam_jax.train.sharding
  c.fsdp_devices = 1 if arg != 'large' else -1  # the mesh's fsdp axis (-1: every device)
  c.checkpoint_every_steps = {'': 0, 'tiny': 0, 'large': 500}[arg]  # 0: at epoch ends only
  c.keep_checkpoints = 2  # the latest K, and the best by validation ROC-AUC besides
  c.log_every_steps = 25  # JSONL / TensorBoard rows and a plain line when not on a terminal
  c.seed = 0
  return c
