"""The real chest X-ray sets as lists of records to decode, and the quarantine of every record
that cannot be used.

``list_records(config, manual_dir)`` reads a source's label files (cheap) and returns
``(entries, quarantine)``; ``decode(entry, size, mask_resize)`` reads one entry's image and mask
(expensive: the part ``prepare`` runs in parallel) or raises ``codecs.Rejected``. Sources:

- ``siim``: SIIM-ACR's ``train-rle.csv`` (stage 1: a leading space in the header and values) or
  ``stage_2_train.csv``, and ``dicom-images-train/<study>/<series>/<ImageId>.dcm``; several rows
  of one image are the union of their masks; PatientID is a random UUID per file there, so
  images are grouped by their pixels only.
- ``siim_png``: (a) ``png_images/``, ``png_masks/``, ``stage_1_train_images.csv`` and
  ``stage_1_test_images.csv`` (``new_filename, ImageId, has_pneumo``); (b) ``train/``, ``test/``
  and ``masks/`` with ``<ImageId>.png`` (the label is whether the mask has a pixel).
- ``nih``: ChestX-ray14's ``Data_Entry_2017*.csv`` and ``BBox_List_2017.csv``; the boxes of
  ``finding`` become masks; positive images without a box are kept for classification, with
  ``has_mask`` False.
- ``chexlocalize``: ``gt_segmentations_<split>.json`` (COCO compressed RLE) or
  ``gt_annotations_<split>.json`` (polygons) for ``task``, images under ``CheXpert/``.
- ``csv``: the user's ``labels.csv`` with ``image, label`` and optionally ``mask`` (a path),
  ``rle``, ``boxes`` (``x y w h`` separated by ``;``), ``patient_id`` and ``split``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re

import numpy as np

from cam_jax.core.errors import BadInput, MissingInput
from cam_jax.data import codecs, images
from cam_jax.data.codecs import Rejected

SOURCES = ('siim', 'siim_png', 'nih', 'chexlocalize', 'csv')
SIIM_SHAPE = (1024, 1024)  # SIIM's RLE is over the competition's 1024 x 1024 images
NIH_FINDINGS = ('Atelectasis', 'Cardiomegaly', 'Consolidation', 'Edema', 'Effusion',
                'Emphysema', 'Fibrosis', 'Hernia', 'Infiltration', 'Mass', 'Nodule',
                'Pleural_Thickening', 'Pneumonia', 'Pneumothorax')
NIH_ALIASES = {'Infiltrate': 'Infiltration'}  # BBox_List_2017.csv vs Data_Entry_2017.csv


@dataclasses.dataclass(frozen=True)
class Entry:
  """One record to decode. ``mask`` is ``(kind, payload...)``: ('none',), ('runs', starts,
  lengths, shape or None for the image's), ('png', path), ('coco', counts, size),
  ('polygons', polygons, size), ('boxes', boxes). ``masks_complete``: a positive label must come
  with a mask (False for NIH, whose boxes cover some positives only)."""
  id: str
  image: str
  label: int
  mask: tuple
  where: str
  patient: str = ''
  masks_complete: bool = True
  split: str = ''


@dataclasses.dataclass(frozen=True)
class Quarantined:
  file: str
  record: str
  reason: str


def decode(entry: Entry, size: int, mask_resize: str) -> dict:
  """The entry's image and mask at ``size`` x ``size`` plus the digest of its full-size pixels;
  ``Rejected`` for a bad image, a mask of another size, a positive without a mask (where masks
  are complete) or a mask on a negative."""
  image = images.read_image(entry.image)
  mask = _mask(entry.mask, image.shape)
  if mask.shape != image.shape:
    raise Rejected(f'mask size {mask.shape[0]}x{mask.shape[1]} differs from image size '
                   f'{image.shape[0]}x{image.shape[1]}')
  has_mask = bool(mask.any())
  if entry.label == 1 and entry.masks_complete and not has_mask:
    raise Rejected('positive label without a mask')
  if entry.label == 0 and has_mask:
    raise Rejected('mask on a negative label')
  digest = hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode())
  return {'image': images.resize_image(image, size),
          'mask': images.resize_mask(mask, size, mask_resize), 'has_mask': has_mask,
          'pixels': digest.hexdigest()}


def _mask(spec: tuple, shape: tuple[int, int]) -> np.ndarray:
  kind = spec[0]
  if kind == 'none':
    return np.zeros(shape, bool)
  if kind == 'runs':
    _, starts, lengths, mask_shape = spec
    return codecs.runs_to_mask(starts, lengths, mask_shape or shape)
  if kind == 'png':
    if not os.path.isfile(spec[1]):
      raise Rejected(f'missing mask file {spec[1]}')
    return images.read_mask_picture(spec[1])
  if kind == 'coco':
    return codecs.decode_coco_rle(spec[1], spec[2])
  if kind == 'polygons':
    return codecs.polygons_to_mask(spec[1], spec[2])
  return codecs.boxes_to_mask(spec[1], shape)  # 'boxes'


def list_records(config, manual_dir: str) -> tuple[list[Entry], list[Quarantined]]:
  """The entries of source ``config.name`` under ``manual_dir`` and what was quarantined while
  reading its label files."""
  if not os.path.isdir(manual_dir):
    raise MissingInput(f'manual_dir {manual_dir!r} is not a directory')
  listing = {'siim': _siim, 'siim_png': _siim_png, 'nih': _nih, 'chexlocalize': _chexlocalize,
             'csv': _user_csv}[config.name]
  return listing(config, manual_dir)


def _files(root: str, suffixes: tuple[str, ...]) -> dict[str, str]:
  """File stem -> path for every file under ``root`` ending in ``suffixes``."""
  found = {}
  for here, _, names in os.walk(root):
    for name in names:
      if name.lower().endswith(suffixes):
        found.setdefault(os.path.splitext(name)[0], os.path.join(here, name))
  return found


def _read_csv(path: str) -> list[dict]:
  """Rows of a CSV with names and values stripped (SIIM stage 1 pads both with a space)."""
  with open(path, newline='') as f:
    reader = csv.reader(f)
    try:
      header = [h.strip() for h in next(reader)]
    except StopIteration:
      raise BadInput(f'{path} is empty') from None
    return [{h: v.strip() for h, v in zip(header, row) if h} for row in reader if row]


def _need(path: str, what: str) -> str:
  if not os.path.exists(path):
    raise MissingInput(f'{path} not found ({what})')
  return path


def _parse_rows(rows, path, id_key, rle_key, quarantine):
  """Parsed runs (None for '-1') per row, rows with a bad encoding quarantined."""
  parsed = []
  for n, row in enumerate(rows, start=2):
    if not row.get(id_key):
      quarantine.append(Quarantined(path, f'row {n}', f'no {id_key} in the row'))
      continue
    try:
      parsed.append((n, row, codecs.parse_rle(row.get(rle_key, ''))))
    except Rejected as e:
      quarantine.append(Quarantined(path, f'row {n} {row.get(id_key, "")}', str(e)))
  return parsed


def _resolve(parsed, encoding, size, path, id_key, quarantine):
  """Absolute (starts, lengths) per kept row under ``encoding`` (decided per file for 'auto')."""
  if encoding not in codecs.ENCODINGS:
    raise BadInput(f'unknown config.data.encoding {encoding!r}; choose one of: '
                   f'{", ".join(codecs.ENCODINGS)}')
  if encoding == 'auto':
    encoding = codecs.decide_encoding([p for _, _, p in parsed], size, path)
  kept = []
  for n, row, runs in parsed:
    if runs is not None:
      try:
        starts = codecs.absolute_starts(*runs, encoding)
        codecs.check_runs(starts, runs[1], size)
      except Rejected as e:
        quarantine.append(Quarantined(path, f'row {n} {row.get(id_key, "")}', str(e)))
        continue
      runs = (starts, runs[1])
    kept.append((n, row, runs))
  return kept


def _union_by_id(kept, path, id_key, quarantine):
  """Rows of one image merged (their runs' union); '-1' beside runs is a conflicting label."""
  by_id: dict[str, list] = {}
  for n, row, runs in kept:
    by_id.setdefault(row[id_key], []).append((n, runs))
  merged = {}
  for image_id, rows in by_id.items():
    labels = {runs is not None for _, runs in rows}
    if len(labels) > 1:
      quarantine.append(Quarantined(path, f'rows {", ".join(str(n) for n, _ in rows)} '
                                    f'{image_id}', 'duplicate id with a different label'))
      continue
    runs = [r for _, r in rows if r is not None]
    merged[image_id] = (rows[0][0], codecs.union_runs(runs) if runs else None)
  return merged


def _siim(config, manual_dir):
  quarantine = []
  path = config.labels and os.path.join(manual_dir, config.labels)
  if not path:
    found = [p for p in ('train-rle.csv', 'stage_2_train.csv')
             if os.path.exists(os.path.join(manual_dir, p))]
    if not found:
      raise MissingInput(f'no train-rle.csv or stage_2_train.csv in {manual_dir}')
    path = os.path.join(manual_dir, found[0])
  rows = _read_csv(_need(path, 'the SIIM label file'))
  if rows and not {'ImageId', 'EncodedPixels'} <= set(rows[0]):
    raise BadInput(f'{path}: expected columns ImageId, EncodedPixels; found {", ".join(rows[0])}')
  size = SIIM_SHAPE[0] * SIIM_SHAPE[1]
  parsed = _parse_rows(rows, path, 'ImageId', 'EncodedPixels', quarantine)
  kept = _resolve(parsed, config.encoding, size, path, 'ImageId', quarantine)
  merged = _union_by_id(kept, path, 'ImageId', quarantine)
  root = os.path.join(manual_dir, 'dicom-images-train')
  dicoms = _files(root if os.path.isdir(root) else manual_dir, ('.dcm',))
  entries = []
  for image_id, (n, runs) in merged.items():
    where = f'{os.path.basename(path)} row {n} {image_id}'
    if image_id not in dicoms:
      quarantine.append(Quarantined(path, f'row {n} {image_id}', 'missing file (no DICOM '
                                    f'{image_id}.dcm under {manual_dir})'))
      continue
    mask = ('none',) if runs is None else ('runs', runs[0], runs[1], SIIM_SHAPE)
    entries.append(Entry(image_id, dicoms[image_id], int(runs is not None), mask, where))
  for stem in sorted(set(dicoms) - set(merged) - _quarantined_ids(quarantine)):
    quarantine.append(Quarantined(dicoms[stem], stem, f'no label row in {path}'))
  return entries, quarantine


def _quarantined_ids(quarantine) -> set[str]:
  return {q.record.rsplit(' ', 1)[-1] for q in quarantine}


def _siim_png(config, manual_dir):
  if os.path.isdir(os.path.join(manual_dir, 'png_images')):
    return _siim_png_a(manual_dir)
  if os.path.isdir(os.path.join(manual_dir, 'masks')):
    return _siim_png_b(manual_dir)
  raise MissingInput(f'{manual_dir} holds neither png_images/ + png_masks/ (with '
                     'stage_1_*_images.csv) nor train/, test/ and masks/')


def _siim_png_a(manual_dir):
  entries, quarantine = [], []
  for name in ('stage_1_train_images.csv', 'stage_1_test_images.csv'):
    path = os.path.join(manual_dir, name)
    if not os.path.exists(path):
      continue
    for n, row in enumerate(_read_csv(path), start=2):
      filename, label = row.get('new_filename', ''), row.get('has_pneumo', '')
      if label not in ('0', '1') or not filename:
        quarantine.append(Quarantined(path, f'row {n} {filename}', 'has_pneumo is not 0 or 1'))
        continue
      entries.append(Entry(row.get('ImageId') or filename,
                           os.path.join(manual_dir, 'png_images', filename), int(label),
                           ('png', os.path.join(manual_dir, 'png_masks', filename)),
                           f'{name} row {n}'))
  if not entries and not quarantine:
    raise MissingInput(f'no stage_1_train_images.csv or stage_1_test_images.csv in {manual_dir}')
  return _unique(entries, quarantine)


def _siim_png_b(manual_dir):
  masks = _files(os.path.join(manual_dir, 'masks'), ('.png',))
  entries, quarantine = [], []
  for folder in ('train', 'test'):
    for stem, path in sorted(_files(os.path.join(manual_dir, folder), ('.png',)).items()):
      if stem not in masks:
        quarantine.append(Quarantined(path, stem, 'no mask file in masks/ (the label is read '
                                      'from it)'))
        continue
      label = int(images.read_mask_picture(masks[stem]).any())
      entries.append(Entry(stem, path, label, ('png', masks[stem]), f'{folder}/{stem}.png'))
  return _unique(entries, quarantine)


def _unique(entries, quarantine):
  """Entries with one id each: when an id repeats with another label every one of its records
  is quarantined; with the same label the first is kept and each repeat gets a line."""
  by_id: dict[str, list[Entry]] = {}
  for e in entries:
    by_id.setdefault(e.id, []).append(e)
  kept = []
  for group in by_id.values():
    if len({e.label for e in group}) > 1:
      quarantine += [Quarantined(e.image, e.where, 'duplicate id with a different label')
                     for e in group]
      continue
    kept.append(group[0])
    quarantine += [Quarantined(e.image, e.where, f'duplicate id (same label; {group[0].where} '
                               'kept)') for e in group[1:]]
  return kept, quarantine


def _nih(config, manual_dir):
  finding = NIH_ALIASES.get(config.finding, config.finding)
  if finding not in NIH_FINDINGS:
    raise BadInput(f'unknown config.data.finding {config.finding!r}; choose one of: '
                   f'{", ".join(NIH_FINDINGS)}')
  entry_files = sorted(f for f in os.listdir(manual_dir) if re.match(r'Data_Entry_2017.*\.csv$', f))
  if not entry_files:
    raise MissingInput(f'no Data_Entry_2017.csv in {manual_dir}')
  labels_path = os.path.join(manual_dir, entry_files[0])
  quarantine, boxes = [], {}
  box_path = os.path.join(manual_dir, 'BBox_List_2017.csv')
  if os.path.exists(box_path):
    with open(box_path, newline='') as f:
      reader = csv.reader(f)
      next(reader, None)  # 'Image Index,Finding Label,Bbox [x,y,w,h],,,': 9 names, 6 fields
      for n, row in enumerate(reader, start=2):
        try:
          name, label = row[0].strip(), row[1].strip()
          box = tuple(float(v) for v in row[2:6])
        except (IndexError, ValueError):
          quarantine.append(Quarantined(box_path, f'row {n}', 'not <image>,<finding>,x,y,w,h'))
          continue
        if NIH_ALIASES.get(label, label) == finding:
          boxes.setdefault(name, []).append(box)
  pngs = _files(manual_dir, ('.png',))
  entries = []
  with open(labels_path, newline='') as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader)]  # a trailing comma adds an empty name
    try:
      i_name, i_labels, i_patient = (header.index(h) for h in
                                     ('Image Index', 'Finding Labels', 'Patient ID'))
    except ValueError:
      raise BadInput(f'{labels_path}: expected columns Image Index, Finding Labels, Patient '
                     f'ID; found {", ".join(h for h in header if h)}') from None
    for n, row in enumerate(reader, start=2):
      if len(row) <= max(i_name, i_labels, i_patient):
        quarantine.append(Quarantined(labels_path, f'row {n}', f'{len(row)} fields, too few'))
        continue
      name = row[i_name].strip()
      findings = {NIH_ALIASES.get(x.strip(), x.strip()) for x in row[i_labels].split('|')}
      stem = os.path.splitext(name)[0]
      if stem not in pngs:
        quarantine.append(Quarantined(labels_path, f'row {n} {name}', 'missing file'))
        continue
      mask = ('boxes', tuple(boxes[name])) if name in boxes else ('none',)
      entries.append(Entry(name, pngs[stem], int(finding in findings), mask,
                           f'{entry_files[0]} row {n}', patient=row[i_patient].strip(),
                           masks_complete=False))
  return _unique(entries, quarantine)


def _chexlocalize(config, manual_dir):
  names = sorted(os.listdir(manual_dir))
  files = ([f for f in names if re.match(r'gt_segmentations_.*\.json$', f)] or
           [f for f in names if re.match(r'gt_annotations_.*\.json$', f)])
  if not files:
    raise MissingInput(f'no gt_segmentations_<split>.json or gt_annotations_<split>.json in '
                       f'{manual_dir}')
  jpgs = {}
  for here, _, found in os.walk(manual_dir):
    for name in found:
      if name.lower().endswith(('.jpg', '.jpeg', '.png')):
        parts = os.path.relpath(os.path.join(here, name), manual_dir).split(os.sep)
        jpgs['_'.join(parts[-3:]).rsplit('.', 1)[0]] = os.path.join(here, name)
  entries, quarantine = [], []
  for name in files:
    path = os.path.join(manual_dir, name)
    with open(path) as f:
      truth = json.load(f)
    for cxr_id, tasks in sorted(truth.items()):
      record = f'{name} {cxr_id}'
      if cxr_id not in jpgs:
        quarantine.append(Quarantined(path, cxr_id, 'missing file'))
        continue
      if name.startswith('gt_segmentations_'):
        seg = tasks.get(config.task)
        if not isinstance(seg, dict) or 'counts' not in seg or 'size' not in seg:
          quarantine.append(Quarantined(path, cxr_id, f'no {config.task!r} segmentation'))
          continue
        mask = ('coco', seg['counts'], tuple(seg['size']))
        try:
          label = int(codecs.decode_coco_rle(*mask[1:]).any())
        except Rejected as e:
          quarantine.append(Quarantined(path, cxr_id, str(e)))
          continue
      else:
        polygons = tasks.get(config.task, [])
        mask = ('polygons', polygons, tuple(tasks.get('img_size', ())))
        label = int(bool(polygons))
      entries.append(Entry(cxr_id, jpgs[cxr_id], label, mask, record,
                           patient=cxr_id.split('_', 1)[0]))
  return _unique(entries, quarantine)


def _user_csv(config, manual_dir):
  path = _need(os.path.join(manual_dir, config.labels or 'labels.csv'), 'the label CSV')
  rows = _read_csv(path)
  if rows and not {'image', 'label'} <= set(rows[0]):
    raise BadInput(f'{path}: needs columns image and label (optional: mask, rle, boxes, '
                   f'patient_id, split); found {", ".join(rows[0])}')
  quarantine, entries = [], []
  base = os.path.dirname(path)
  parsed = _parse_rows(rows, path, 'image', 'rle', quarantine)
  if rows and 'rle' in rows[0]:
    parsed = _resolve(parsed, config.encoding, None, path, 'image', quarantine)
  for n, row, runs in parsed:
    record = f'row {n} {row["image"]}'
    if row.get('label') not in ('0', '1'):
      quarantine.append(Quarantined(path, record, f'label {row.get("label")!r} is not 0 or 1'))
      continue
    mask, has_masks = ('none',), bool({'mask', 'rle', 'boxes'} & set(row))
    if row.get('mask'):
      mask = ('png', os.path.join(base, row['mask']))
    elif runs is not None:
      mask = ('runs', runs[0], runs[1], None)
    elif row.get('boxes'):
      try:
        boxes = tuple(tuple(float(v) for v in b.split()) for b in row['boxes'].split(';'))
        if any(len(b) != 4 for b in boxes):
          raise ValueError
      except ValueError:
        quarantine.append(Quarantined(path, record, 'boxes are not "x y w h;x y w h..."'))
        continue
      mask = ('boxes', boxes)
    entries.append(Entry(row['image'], os.path.join(base, row['image']), int(row['label']), mask,
                         f'{os.path.basename(path)} {record}', patient=row.get('patient_id', ''),
                         masks_complete=has_masks, split=row.get('split', '')))
  return _unique(entries, quarantine)
