"""The real chest X-ray sets (``cam_jax.data.sources``) as TFDS builders reading ``manual_dir``.

Preparing one lists the source's records, decodes every image and mask in parallel (DICOM
decoding is the cost), resizes each once to ``image_size`` (images antialiased, masks by
``mask_resize``), groups records by patient and identical pixels, splits the groups
(``cam_jax.data.splits``) and writes array_record with ``Tensor`` features only. Next to the
data (in ``<data dir>/<source>/<size>px_<digest>/1.0.0/``) it writes ``splits.csv`` (id, split,
label, has_mask, group, patient; give it back as ``split_file`` to reuse the assignment),
``quarantine.csv`` (file, record, reason: every record left out, and why) and
``summary.json``. All three land with the data in one rename, so an interrupted preparation
leaves nothing a reader takes for finished; a rerun with the same settings finds it and does
nothing.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import re
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from cam_jax.core.errors import BadInput, MissingInput
from cam_jax.data import cache, images, phantom_tfds, sources, splits
from cam_jax.data.codecs import Rejected

SPLITS = splits.SPLITS
SPLIT_FILE, QUARANTINE_FILE, SUMMARY_FILE = 'splits.csv', 'quarantine.csv', 'summary.json'
# How and where to prepare, not what: not in the digest (``data_dir`` is a configs/data/ file's).
RUN_FIELDS = ('num_workers', 'strict', 'progress', 'data_dir')

INSTRUCTIONS = """\
Download the data set yourself and pass its folder as `--config.data.manual_dir=DIR` (or, with
a configs/data/<name>.py config, `--config.manual_dir=DIR`):
- siim: the SIIM-ACR pneumothorax set: DIR/train-rle.csv (or stage_2_train.csv) and
  DIR/dicom-images-train/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm.
- siim_png: a PNG conversion, either DIR/png_images/, DIR/png_masks/,
  DIR/stage_1_train_images.csv, DIR/stage_1_test_images.csv, or DIR/train/, DIR/test/,
  DIR/masks/ with <ImageId>.png.
- nih: NIH ChestX-ray14: DIR/Data_Entry_2017.csv, DIR/BBox_List_2017.csv and the PNGs anywhere
  under DIR (images_001/images/... as unpacked).
- chexlocalize: DIR/gt_segmentations_<split>.json (or gt_annotations_<split>.json) and the
  CheXpert images under DIR (CheXpert/<split>/<patient>/<study>/<view>.jpg).
- csv: DIR/labels.csv with columns image, label and optionally mask, rle, boxes, patient_id,
  split; paths relative to DIR.
"""


@dataclasses.dataclass
class RealConfig(tfds.core.BuilderConfig):
  settings: str = '{}'  # the data config as JSON (every field that changes the data)


class ChestXray(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A chest X-ray source prepared from ``manual_dir``; one subclass per source name."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  staging_dir = ''  # set by ``load``: where decoded pixels wait for the split assignment
  run = None  # set by ``load``: the data config's run fields (workers, strict, progress)

  def _info(self) -> tfds.core.DatasetInfo:
    size = json.loads(self.builder_config.settings)['image_size']
    return tfds.core.DatasetInfo(
        builder=self, description=self.builder_config.description,
        features=phantom_tfds.record_features(size, has_mask=np.bool_, group=np.int64))

  def _split_generators(self, dl_manager):
    settings = _Settings(json.loads(self.builder_config.settings))
    entries, quarantine = sources.list_records(settings, str(dl_manager.manual_dir))
    _check_strict(self.run, quarantine)
    size = settings.image_size
    n = len(entries)
    pixels = np.lib.format.open_memmap(os.path.join(self.staging_dir, 'images.npy'), 'w+',
                                       np.uint8, (max(n, 1), size, size))
    masks = np.lib.format.open_memmap(os.path.join(self.staging_dir, 'masks.npy'), 'w+',
                                      np.bool_, (max(n, 1), size, size))
    kept, digests, has_mask = [], [], []
    for i, result in _decode_all(entries, size, settings.mask_resize, self.run):
      if isinstance(result, str):
        quarantine.append(sources.Quarantined(entries[i].image, entries[i].where, result))
        _check_strict(self.run, quarantine)
        continue
      pixels[i], masks[i] = result['image'], result['mask']
      kept.append(i)
      digests.append(result['pixels'])
      has_mask.append(result['has_mask'])
    rows = _assign(settings, [entries[i] for i in kept], digests, has_mask, quarantine)
    _write_tables(self.data_dir, rows, quarantine, settings)
    return {s: self._generate_examples([(kept[k], r) for k, r in enumerate(rows)
                                        if r['split'] == s], pixels, masks) for s in SPLITS}

  def _generate_examples(self, rows, pixels, masks):
    for i, row in rows:
      yield row['id'], {'image': pixels[i][..., None], 'mask': masks[i], 'label': row['label'],
                        'id': row['id'], 'has_mask': row['has_mask'], 'group': row['group']}


BUILDERS = {name: type(f'ChestXray_{name}', (ChestXray,), {'name': name},
                       skip_registration=True) for name in sources.SOURCES}


class _Settings:
  """Attribute access to the data settings, for ``sources.list_records``."""

  def __init__(self, values: dict):
    self.__dict__.update(values)


def _check_strict(run, quarantine):
  if run and run.get('strict') and quarantine:
    q = quarantine[0]
    raise BadInput(f'{q.file}: {q.record}: {q.reason} (strict: the first quarantined record '
                   'stops the preparation)')


def _decode_one(entry, size, mask_resize):
  try:
    return sources.decode(entry, size, mask_resize)
  except Rejected as e:
    return str(e)


def _decode_all(entries, size, mask_resize, run):
  """``(index, decoded dict or reason)`` for every entry, in order, on ``num_workers``
  processes (spawned: the parent may hold JAX's threads), with a progress bar."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  run = run or {}
  fn = functools.partial(_decode_one, size=size, mask_resize=mask_resize)
  workers = int(run.get('num_workers') or os.cpu_count() or 1)
  bar = tqdm(total=len(entries), desc='decoding', unit='img', disable=not run.get('progress'))
  with bar:
    if workers <= 1 or len(entries) < 2 * workers:
      results = map(fn, entries)
      for i, r in enumerate(results):
        bar.update()
        yield i, r
      return
    ctx = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      for i, r in enumerate(pool.map(fn, entries, chunksize=8)):
        bar.update()
        yield i, r


def _assign(settings, entries, digests, has_mask, quarantine) -> list[dict]:
  """One row per kept record with its split (from ``split_file``, the source's own split
  column, or ``splits.assign``) and its group."""
  group = splits.groups([e.patient for e in entries], digests)
  labels = np.array([e.label for e in entries], np.int64)
  fixed = _split_file(settings.split_file) if settings.split_file else None
  if fixed is None and any(e.split for e in entries):
    fixed = {e.id: e.split for e in entries}
  if fixed is None:
    fractions = (1.0 - settings.validation_fraction - settings.test_fraction,
                 settings.validation_fraction, settings.test_fraction)
    split = splits.assign(group, labels, fractions, settings.seed)
  else:
    split = [fixed.get(e.id, '') for e in entries]
    seen: dict[int, str] = {}
    for k, e in enumerate(entries):
      if seen.setdefault(int(group[k]), split[k]) != split[k]:
        raise BadInput(f'{e.where}: the given splits put one patient or duplicate group in '
                       f'{seen[int(group[k])]} and {split[k]} (patient {e.patient!r}); keep '
                       'each group in one split')
  rows = []
  for k, e in enumerate(entries):
    if split[k] not in SPLITS:
      quarantine.append(sources.Quarantined(e.image, e.where, f'split {split[k]!r} is not one '
                                            f'of {", ".join(SPLITS)}'))
      continue
    rows.append({'id': e.id, 'split': str(split[k]), 'label': int(labels[k]),
                 'has_mask': bool(has_mask[k]), 'group': int(group[k]), 'patient': e.patient,
                 'pixels': digests[k]})
  empty = [s for s in SPLITS if not any(r['split'] == s for r in rows)]
  if empty:
    raise BadInput(f'{settings.manual_dir}: split {", ".join(empty)} would be empty ({len(rows)} '
                   f'usable records in {len(set(group))} groups); change validation_fraction / '
                   'test_fraction or the split file')
  return rows


def _split_file(path: str) -> dict[str, str]:
  if not os.path.isfile(path):
    raise MissingInput(f'split_file {path!r} not found')
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  if rows and not {'id', 'split'} <= set(rows[0]):
    raise BadInput(f'{path}: a split file needs columns id and split')
  return {r['id']: r['split'] for r in rows}


def _reason_kind(reason: str) -> str:
  """A reason without its particulars (numbers, parenthesised detail), for counting."""
  return re.sub(r'\d+', 'N', reason.split(' (')[0].split(': install')[0])


def summarise(rows: list[dict], quarantine: list) -> dict:
  """Counts per split and label, masks per split, duplicates, quarantine counts by reason."""
  per_split = {s: {'records': 0, 'positive': 0, 'negative': 0, 'with_mask': 0} for s in SPLITS}
  for r in rows:
    c = per_split[r['split']]
    c['records'] += 1
    c['positive' if r['label'] else 'negative'] += 1
    c['with_mask'] += int(r['has_mask'])
  same = collections.Counter(r['pixels'] for r in rows)
  reasons = collections.Counter(_reason_kind(q.reason) for q in quarantine)
  return {'splits': per_split,
          'duplicates': {'groups': sum(1 for v in same.values() if v > 1),
                         'images': sum(v for v in same.values() if v > 1)},
          'quarantined': len(quarantine), 'quarantine_reasons': dict(reasons.most_common())}


def _write_tables(folder, rows, quarantine, settings) -> None:
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, SPLIT_FILE), 'w', newline='') as f:
    writer = csv.DictWriter(f, ['id', 'split', 'label', 'has_mask', 'group', 'patient',
                                'pixels'])
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (r['split'], r['id'])))
  with open(os.path.join(folder, QUARANTINE_FILE), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['file', 'record', 'reason'])
    writer.writerows((q.file, q.record, q.reason) for q in quarantine)
  summary = summarise(rows, quarantine)
  summary['settings'] = settings.__dict__
  with open(os.path.join(folder, SUMMARY_FILE), 'w') as f:
    json.dump(summary, f, indent=1, sort_keys=True)


def settings_of(data_config) -> dict:
  """The fields of ``data_config`` that change the data, ``manual_dir`` made absolute."""
  values = {k: v for k, v in data_config.to_dict().items() if k not in RUN_FIELDS}
  if not values.get('manual_dir'):
    raise MissingInput(f'config.data.manual_dir is empty for data set {data_config.name!r}.\n'
                       + INSTRUCTIONS)
  values['manual_dir'] = os.path.abspath(os.path.expanduser(values['manual_dir']))
  if values['mask_resize'] not in images.MASK_RESIZE:
    raise BadInput(f'unknown config.data.mask_resize {values["mask_resize"]!r}; choose one of: '
                   f'{", ".join(images.MASK_RESIZE)}')
  if not 0 <= values['validation_fraction'] + values['test_fraction'] < 1:
    raise BadInput('config.data.validation_fraction + test_fraction must be in [0, 1)')
  return values


def builder_config(data_config) -> RealConfig:
  """A config named by the size and a digest of every setting that changes the data."""
  settings = settings_of(data_config)
  text = json.dumps(settings, sort_keys=True)
  digest = hashlib.sha1(text.encode()).hexdigest()[:10]
  return RealConfig(name=f'{settings["image_size"]}px_{digest}', settings=text,
                    description=f'{data_config.name} chest X-rays from {settings["manual_dir"]}'
                    f'; images resized antialiased (Lanczos), masks by '
                    f'{settings["mask_resize"]}. Settings: {text}')


def load(data_config, data_dir: str):
  """``(builder, summary, fresh)``: the prepared data set (prepared first when missing, under
  the data set's lock), its summary and whether this call prepared it."""
  config = builder_config(data_config)
  cls = BUILDERS[data_config.name]
  run = {k: data_config.get(k) for k in RUN_FIELDS}

  def prepare(found):
    manual_dir = json.loads(config.settings)['manual_dir']
    if not os.path.isdir(manual_dir):
      raise MissingInput(f'manual_dir {manual_dir!r} is not a directory.\n' + INSTRUCTIONS)
    tfds.disable_progress_bar()
    parent = os.path.dirname(found.data_dir)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=cache.STAGING_PREFIX, dir=parent) as staging:
      found.staging_dir, found.run = staging, run
      found.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))

  builder, fresh = cache.prepared(
      lambda: cls(config=config, data_dir=data_dir, file_format='array_record'), prepare)
  with open(os.path.join(builder.data_dir, SUMMARY_FILE)) as f:
    return builder, json.load(f), fresh
