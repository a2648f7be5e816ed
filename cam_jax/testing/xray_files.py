"""Fixture writers for the real-data tests and the data bench: SIIM-style DICOM trees (pydicom:
JPEG-baseline 8-bit MONOCHROME2 as the competition's files, uncompressed 16-bit with any tags),
stage-1 and stage-2 label CSVs and PNGs, SIIM's two PNG layouts, NIH ChestX-ray14's pair of
CSVs and CheXlocalize's JSON, all from pixels, masks and boxes the caller knows."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
  ExplicitVRLittleEndian,
  JPEGBaseline8Bit,
  SecondaryCaptureImageStorage,
  generate_uid,
)

from cam_jax.data import codecs


def _dataset(rows: int, cols: int, syntax) -> FileDataset:
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = syntax
  ds = FileDataset('', {}, file_meta=meta, preamble=b'\0' * 128)
  ds.SOPClassUID = SecondaryCaptureImageStorage
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
  ds.PatientID = generate_uid()  # SIIM: a random UUID per file
  ds.Modality = 'CR'
  ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
  return ds


def jpeg_bytes(pixels: np.ndarray, quality: int = 95) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def jpeg_dicom(path, pixels: np.ndarray, uid: str = ''):
  """A SIIM-like file: 8-bit MONOCHROME2, JPEG baseline (1.2.840.10008.1.2.4.50). ``path`` is a
  file name (its stem the SOPInstanceUID, as in SIIM) or a binary file object (``uid``)."""
  uid = uid or os.path.basename(path)[:-4]
  ds = _dataset(*pixels.shape, JPEGBaseline8Bit)
  ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
  ds.PhotometricInterpretation = 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
  ds.PixelData = pydicom.encaps.encapsulate([jpeg_bytes(pixels)])
  ds['PixelData'].is_undefined_length = True
  if isinstance(path, str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  ds.save_as(path, enforce_file_format=True)
  return path


def raw_dicom(path: str, stored: np.ndarray, **tags) -> str:
  """Uncompressed 16-bit unsigned DICOM with ``tags`` (PhotometricInterpretation, RescaleSlope,
  WindowCenter, ...)."""
  ds = _dataset(*stored.shape, ExplicitVRLittleEndian)
  ds.PhotometricInterpretation = 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
  for k, v in tags.items():
    setattr(ds, k, v)
  ds.PixelData = stored.astype('<u2').tobytes()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  ds.save_as(path, enforce_file_format=True)
  return path


def siim_uid(i: int) -> str:
  return f'1.2.276.0.7230010.3.1.4.{8323329 + i}.1517875{i:03d}.1'


def siim_tree(root: str, pictures: np.ndarray, masks: np.ndarray, *, stage: int = 1,
              split_rows: bool = True) -> list[str]:
  """``dicom-images-train/<study>/<series>/<ImageId>.dcm`` and the stage's label CSV, relative
  RLE (stage 1 with its leading spaces); a positive mask is written as two rows (their union)
  when ``split_rows``. Returns the ImageIds."""
  ids, lines = [], []
  for i, (pixels, mask) in enumerate(zip(pictures, masks)):
    uid = siim_uid(i)
    ids.append(uid)
    jpeg_dicom(os.path.join(root, 'dicom-images-train', f'1.2.{i}', f'1.3.{i}', f'{uid}.dcm'),
               pixels)
    parts = [mask]
    if mask.any() and split_rows:
      top = mask.copy()
      top[mask.shape[0] // 2:] = False
      parts = [top, mask & ~top] if top.any() and (mask & ~top).any() else [mask]
    for part in parts:
      lines.append((uid, codecs.encode_rle(part, 'relative')))
  if stage == 1:
    text = 'ImageId, EncodedPixels\n' + ''.join(f'{u}, {r}\n' for u, r in lines)
    name = 'train-rle.csv'
  else:
    text = 'ImageId,EncodedPixels\n' + ''.join(f'{u},{r}\n' for u, r in lines)
    name = 'stage_2_train.csv'
  with open(os.path.join(root, name), 'w') as f:
    f.write(text)
  return ids


def png(path: str, array: np.ndarray) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)
  return path


def shapes(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """``n`` random uint8 pictures and masks (a rectangle in every odd one; even ones empty)."""
  rng = np.random.default_rng(seed)
  pictures = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
  masks = np.zeros((n, size, size), bool)
  for i in range(1, n, 2):
    r, c = rng.integers(0, size // 2, size=2)
    masks[i, r:r + size // 4 + i % 3, c:c + size // 5 + 1] = True
  return pictures, masks


def siim_png_tree(root: str, pictures: np.ndarray, masks: np.ndarray, layout: str,
                  n_test: int = 2) -> list[str]:
  """A PNG conversion of SIIM: layout 'a' (``png_images/``, ``png_masks/`` and
  ``stage_1_{train,test}_images.csv``) or 'b' (``train/``, ``test/``, ``masks/``); masks 0/255,
  the last ``n_test`` images in the test part. Returns the ids a source gives them."""
  ids, rows = [], {'train': [], 'test': []}
  for i, (pixels, mask) in enumerate(zip(pictures, masks)):
    part = 'test' if i >= len(pictures) - n_test else 'train'
    if layout == 'a':
      name, image_id = f'{i}_{part}_{int(mask.any())}_.png', f'1.2.276.{i}'
      png(os.path.join(root, 'png_images', name), pixels)
      png(os.path.join(root, 'png_masks', name), mask.astype(np.uint8) * 255)
      rows[part].append(f'{name},{image_id},{int(mask.any())}\n')
    else:
      image_id = f'1.2.276.{i}'
      png(os.path.join(root, part, f'{image_id}.png'), pixels)
      png(os.path.join(root, 'masks', f'{image_id}.png'), mask.astype(np.uint8) * 255)
    ids.append(image_id)
  if layout == 'a':
    for part, lines in rows.items():
      with open(os.path.join(root, f'stage_1_{part}_images.csv'), 'w') as f:
        f.write('new_filename,ImageId,has_pneumo\n' + ''.join(lines))
  return ids


def nih_tree(root: str, pictures: np.ndarray, findings: list[str], patients: list[str],
             boxes: dict[int, list[tuple]]) -> list[str]:
  """ChestX-ray14 as unpacked: ``images_001/images/<index>.png``, ``Data_Entry_2017.csv``
  (``findings[i]`` '|'-separated, its trailing comma) and ``BBox_List_2017.csv`` (nine header
  names for six fields) with ``boxes[i]``: ``(finding, x, y, w, h)`` per box. Returns the Image
  Index names."""
  names = [f'{i:08d}_000.png' for i in range(len(pictures))]
  for name, pixels in zip(names, pictures):
    png(os.path.join(root, 'images_001', 'images', name), pixels)
  h, w = pictures.shape[1:3]
  with open(os.path.join(root, 'Data_Entry_2017.csv'), 'w') as f:
    f.write('Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View '
            'Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n')
    f.writelines(f'{name},{found},0,{patient},058Y,M,PA,{w},{h},0.14,0.14\n'
                 for name, found, patient in zip(names, findings, patients))
  with open(os.path.join(root, 'BBox_List_2017.csv'), 'w') as f:
    f.write('Image Index,Finding Label,Bbox [x,y,w,h],,,\n')
    f.writelines(f'{names[i]},{label},{x},{y},{bw},{bh}\n'
                 for i, listed in sorted(boxes.items()) for label, x, y, bw, bh in listed)
  return names


def chexlocalize_tree(root: str, pictures: np.ndarray, lesions: list, form: str,
                      task: str = 'Pneumothorax') -> list[str]:
  """CheXpert JPEGs (``CheXpert/val/<patient>/<study>/<view>.jpg``) and
  ``gt_<form>_val.json`` for ``task``: ``lesions[i]`` is a rectangle ``(r0, r1, c0, c1)``
  (rows r0..r1-1, columns c0..c1-1) or None, written as COCO compressed RLE (form
  'segmentations', made with pycocotools) or as its corner polygon ('annotations', outline
  included). Returns the cxr ids."""
  from pycocotools import mask as coco_mask  # pylint: disable=g-import-not-at-top
  ids, truth = [], {}
  h, w = pictures.shape[1:3]
  for i, (pixels, lesion) in enumerate(zip(pictures, lesions)):
    cxr_id = f'patient{64541 + i}_study1_view1_frontal'
    patient, study, view = cxr_id.split('_', 2)
    path = os.path.join(root, 'CheXpert', 'val', patient, study, f'{view}.jpg')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)
    ids.append(cxr_id)
    if form == 'segmentations':
      mask = np.zeros((h, w), np.uint8)
      if lesion is not None:
        mask[lesion[0]:lesion[1], lesion[2]:lesion[3]] = 1
      rle = coco_mask.encode(np.asfortranarray(mask))
      truth[cxr_id] = {task: {'size': rle['size'], 'counts': rle['counts'].decode()}}
    else:
      truth[cxr_id] = {'img_size': [h, w]}
      if lesion is not None:
        r0, r1, c0, c1 = lesion
        truth[cxr_id][task] = [[[c0, r0], [c1 - 1, r0], [c1 - 1, r1 - 1], [c0, r1 - 1]]]
  with open(os.path.join(root, f'gt_{form}_val.json'), 'w') as f:
    json.dump(truth, f)
  return ids
