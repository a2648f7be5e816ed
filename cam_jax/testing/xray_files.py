"""Fixture writers for the real-data tests and the data bench: SIIM-style DICOM trees (pydicom:
JPEG-baseline 8-bit MONOCHROME2 as the competition's files, uncompressed 16-bit with any tags),
stage-1 and stage-2 label CSVs and PNGs, all from pixels and masks the caller knows."""

from __future__ import annotations

import io
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
