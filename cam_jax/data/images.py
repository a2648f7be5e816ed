"""Image files to uint8 (H, W) grayscale: DICOM (pydicom) and PNG / JPEG (Pillow), plus the
one resize every prepared data set goes through. A file that cannot be read raises
``codecs.Rejected`` with the reason a quarantine list shows."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from cam_jax.data.codecs import Rejected

MASK_RESIZE = ('nearest', 'area')


def read_dicom(path: str) -> np.ndarray:
  """A DICOM file's pixels as uint8 (H, W), displayed as a reader would see them.

  The modality LUT (RescaleSlope / RescaleIntercept) first, then the VOI transform (PS3.3
  C.11.2): the first WindowCenter / WindowWidth with the LINEAR function, or a VOI LUT sequence
  (pydicom's ``apply_voi_lut``) then min-max; with neither, 8-bit data stay as stored and wider
  data are min-max scaled. MONOCHROME1 is inverted, so bone is bright in every output.
  """
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom import pixels  # pylint: disable=g-import-not-at-top
  try:
    ds = pydicom.dcmread(path)
    raw = _pixels(ds)
  except (pydicom.errors.InvalidDicomError, EOFError, OSError, KeyError, AttributeError,
          ValueError, TypeError) as e:
    raise Rejected(f'unreadable DICOM ({type(e).__name__}: {" ".join(str(e).split())[:160]})')
  if raw.ndim != 2:
    raise Rejected(f'DICOM pixel data of shape {raw.shape}; only single-frame grayscale is read')
  values = np.asarray(pixels.apply_modality_lut(raw, ds), np.float64)
  centre, width = ds.get('WindowCenter'), ds.get('WindowWidth')
  if centre is not None and width is not None:
    c, w = (float(v[0] if isinstance(v, pydicom.multival.MultiValue) else v)
            for v in (centre, width))
    unit = np.clip((values - (c - 0.5)) / max(w - 1.0, 1e-6) + 0.5, 0.0, 1.0)
  elif 'VOILUTSequence' in ds:
    looked_up = pixels.apply_voi_lut(np.rint(values).astype(np.int64), ds)  # LUT of the
    unit = _min_max(np.asarray(looked_up, np.float64))  # modality output, as C.11.2 defines
  elif int(ds.get('BitsStored', 8)) <= 8 and 'RescaleSlope' not in ds:
    unit = values / 255.0
  else:
    unit = _min_max(values)
  if str(ds.get('PhotometricInterpretation', 'MONOCHROME2')) == 'MONOCHROME1':
    unit = 1.0 - unit
  return np.round(unit * 255.0).astype(np.uint8)


def _pixels(ds) -> np.ndarray:
  """``ds.pixel_array``; compressed data with no decoder installed -> the packages to install."""
  from pydicom.pixels import get_decoder  # pylint: disable=g-import-not-at-top
  syntax = ds.file_meta.TransferSyntaxUID
  if syntax.is_compressed:
    decoder = get_decoder(syntax)
    if not decoder.is_available:
      raise Rejected(f'compressed DICOM ({syntax.name}) and no decoder installed: install one '
                     f'of: {"; ".join(decoder.missing_dependencies)}')
  try:
    return ds.pixel_array
  except RuntimeError as e:
    raise Rejected(f'DICOM pixel data cannot be decoded ({" ".join(str(e).split())[:160]})')


def _min_max(values: np.ndarray) -> np.ndarray:
  lo, hi = float(values.min()), float(values.max())
  return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def read_picture(path: str) -> np.ndarray:
  """A PNG / JPEG as uint8 (H, W) grayscale (16-bit PNGs scaled down by 257, colour to luma)."""
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode in ('I;16', 'I;16B', 'I'):
        return np.round(np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8)
      return np.asarray(im.convert('L'))
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise Rejected(f'unreadable image ({type(e).__name__}: {" ".join(str(e).split())[:120]})')


def read_mask_picture(path: str) -> np.ndarray:
  """A mask PNG -> bool (H, W): any value above 0 (0/255 masks and summed overlays alike)."""
  try:
    with Image.open(path) as im:
      im.load()
      return np.asarray(im).reshape(im.size[1], im.size[0], -1).max(axis=-1) > 0
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise Rejected(f'unreadable mask ({type(e).__name__}: {" ".join(str(e).split())[:120]})')


def read_image(path: str) -> np.ndarray:
  """Any supported image file by its extension (``.dcm`` / ``.dicom``, else Pillow)."""
  if not os.path.isfile(path):
    raise Rejected('missing file')
  if path.lower().endswith(('.dcm', '.dicom')):
    return read_dicom(path)
  return read_picture(path)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 (H, W) -> (size, size), antialiased (Pillow's Lanczos filter widens with the scale)."""
  if image.shape == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, size: int, method: str) -> np.ndarray:
  """bool (H, W) -> (size, size): 'nearest' samples, 'area' averages each output pixel's
  footprint (Pillow's box filter) and keeps pixels at least half covered."""
  if mask.shape == (size, size):
    return mask
  if method == 'nearest':
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
  cover = Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.Resampling.BOX)
  return np.asarray(cover) >= 0.5
