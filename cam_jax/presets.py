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
  c.lesion_contrast = 1.0  # a factor on the lesion's air and pleural line
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


def study_phantom_data(arg: str = '') -> ml_collections.ConfigDict:
  """The embedded study's phantom: 64 px (every model of the depth series has an 8x8 CAM grid)
  with the lesion at 2.5x contrast, which the shallow models learn within two epochs;
  1000 / 200 / 300 images ('tiny': the tiny phantom at that contrast, 'large': as
  ``data_config``)."""
  c = data_config(arg)
  if arg != 'large':
    c.lesion_contrast = 2.5
  if not arg:
    c.update(image_size=64, num_train=1000, num_validation=200, num_test=300)
  return c


# The depth series per family (cam_jax.models.registry: same widths and CAM grid, only the
# number of layers changes), and the paper-scale zoo for an accelerator.
STUDY_MODELS = {
    '': ','.join(f'{f}_tiny_{k}' for f in ('vgg', 'resnet', 'vit') for k in (1, 2, 3)),
    'tiny': 'vgg_tiny_1,vgg_tiny_2,vit_tiny_1,vit_tiny_2',
    'large': 'vgg11_bn,vgg16_bn,vgg19_bn,resnet18,resnet34,resnet50,vit_b16,vit_l16',
}


def study_config(arg: str, data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A study (``cam_jax.study``) of depth series on ``data``: everything past the data source is
  the same for the phantom (``configs/study_phantom.py``) and a real set
  (``configs/study_siim.py``)."""
  c = ml_collections.ConfigDict()
  c.data = data
  c.data_dir = ''  # default: $CAM_JAX_DATA_DIR, else ~/.cache/cam_jax/datasets
  c.models = STUDY_MODELS[arg]
  c.seeds = 2 if arg != 'large' else 3  # each model trained with train.seed + 0 .. seeds - 1
  c.num_classes = 1
  c.init_from = ''  # pretrained weights per model: 'resnet50=/w/r50.pth,vit_b16=/w/vit.npz'
  c.train = train_config(arg, data.name)
  if not arg:
    c.train.update(epochs=2, learning_rate=2e-3)
  # Per-family changes to c.train, the same for every depth of a family: the ViTs learn the
  # lesion later than the CNNs (validation ROC-AUC about 0.5 after two epochs), so they train
  # four epochs with smaller batches and a smaller learning rate.
  c.train_overrides = ml_collections.ConfigDict(
      {'vit': {'epochs': 4, 'batch_size': 16, 'learning_rate': 1e-3}} if not arg else {})
  # methods: cam_jax.cams.METHODS, comma-separated; layer '' = each model's default; target +1
  # explains the positive finding; aug_smooth / eigen_smooth as in pytorch-grad-cam; dtype: the
  # compute dtype of scoring, sanity and heat maps ('float32' or 'bfloat16').
  c.cam = ml_collections.ConfigDict({
      'methods': 'gradcam' if arg != 'large' else 'gradcam,gradcam++,hirescam,eigencam',
      'layer': '', 'target': 1, 'aug_smooth': False, 'eigen_smooth': False,
      'dtype': 'float32'})
  # metrics: groups of cam_jax.scoring.driver.METRIC_GROUPS (ROAD's imputation is slow on a
  # CPU: the accelerator config adds it); tune_split: where the IoU threshold is tuned
  # (CheXlocalize), '' for none (the embedded default saves that pass: its IoU columns use the
  # fixed and Otsu thresholds); deletion_steps: RISE's curve has deletion_steps + 1 points.
  # fill: what deletion / insertion put in place of removed pixels (metrics.faithfulness
  # DELETION_FILLS), 'texture' because 'mean', 'blur' and 'reference' create the lesion cue
  # themselves on the phantom (the fill check, ``scoring.fill_check``, measures it on the healthy
  # test images); fill_split: whose healthy images are the references; fill_check: the fills it
  # compares ('' to skip), on the shallowest model of each family ('shallowest') or on every one
  # ('every'), seed 0.
  c.score = ml_collections.ConfigDict({
      'batch_size': c.train.eval_batch_size, 'n_resamples': 2000 if arg != 'tiny' else 200,
      'baseline_grid': 8, 'overlay_count': 4, 'seed': 0,
      'metrics': 'localisation,deletion_insertion' + (',road' if arg == 'large' else ''),
      'tune_split': '' if not arg else 'validation',
      'deletion_steps': {'': 8, 'tiny': 4, 'large': 16}[arg],
      'fill': 'texture', 'fill_split': 'validation', 'fill_check': 'mean,blur,reference,texture',
      'fill_check_models': 'every' if arg == 'large' else 'shallowest'})
  # Model-parameter randomisation (Adebayo et al. 2018) of seed 0 of every model on the first
  # n_images test images: mode 'cascading' or 'independent', '' to skip.
  c.sanity = ml_collections.ConfigDict({'mode': 'cascading',
                                        'n_images': 32 if arg != 'tiny' else 16})
  # The trust verdict (cam_jax.report.verdict), criterion by criterion: localisation beats chance
  # on chance_metric (CI of the excess above 0 and Holm-adjusted p < alpha); randomising every
  # block leaves mean SSIM <= max_randomised_ssim (Adebayo et al. 2018); repeatability (seed 0 vs
  # seed 1) mean SSIM >= min_seed_ssim and reproducibility (against the other depths of the
  # family, seed 0) >= min_family_ssim (Arun et al. 2021); faithful: insertion - deletion AUC on
  # the positives has its CI above 0.
  # The known-truth shortcut check (configs/study_shortcut.py): 'tube' trains a control of every
  # model on the same images without the tube and compares where their heat lies
  # (scoring.shortcut); '' for none.
  c.shortcut = ''
  c.trust = ml_collections.ConfigDict({
      'chance_metric': 'pointing_game', 'alpha': 0.05, 'max_randomised_ssim': 0.5,
      'min_seed_ssim': 0.5, 'min_family_ssim': 0.3})
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
