"""The real sources on fixtures written here: DICOM to uint8 against Pillow and hand-worked
VOI transforms, each label format read back to the masks it was written from, and every kind of
bad input landing in the quarantine with its reason."""

import csv
import importlib.util
import io
import json
import os

import numpy as np
import pydicom
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pydicom.data import get_testdata_file

from cam_jax import presets
from cam_jax.core.errors import BadInput
from cam_jax.data import codecs, images, sources
from cam_jax.data.codecs import Rejected
from cam_jax.testing import xray_files as xf


def _read(name, root, size=64, **fields):
  """id -> decoded record, and (record, reason) of every quarantined one."""
  config = presets.data_config('tiny', name)
  config.update(fields)
  entries, quarantine = sources.list_records(config, str(root))
  out = {}
  for e in entries:
    try:
      out[e.id] = dict(sources.decode(e, size, 'nearest'), label=e.label, patient=e.patient)
    except Rejected as err:
      quarantine.append(sources.Quarantined(e.image, e.where, str(err)))
  return out, [(q.record, q.reason) for q in quarantine]


def test_jpeg_dicom_reads_as_pillow_decodes_its_bytes(tmp_path):
  pixels = xf.shapes(1, 96)[0][0]
  path = xf.jpeg_dicom(str(tmp_path / 'a' / '1.2.3.dcm'), pixels)
  ds = pydicom.dcmread(path)
  assert ds.file_meta.TransferSyntaxUID == '1.2.840.10008.1.2.4.50'
  want = np.asarray(Image.open(io.BytesIO(xf.jpeg_bytes(pixels))))
  np.testing.assert_array_equal(images.read_dicom(path), want)


def test_monochrome1_16_bit_with_rescale_and_window_by_hand(tmp_path):
  stored = np.array([[0, 100, 200], [300, 400, 4095]], np.uint16)
  path = xf.raw_dicom(str(tmp_path / 'm1.dcm'), stored, PhotometricInterpretation='MONOCHROME1',
                      RescaleSlope=2, RescaleIntercept=-100, WindowCenter=300, WindowWidth=401)
  # value = 2 * stored - 100 = [-100, 100, 300, 500, 700, 8090]; LINEAR window on 300 +- 200,
  # y = (value - 299.5) / 400 + 0.5 clipped; MONOCHROME1 inverts.
  value = 2.0 * stored - 100
  y = np.clip((value - 299.5) / 400 + 0.5, 0, 1)
  np.testing.assert_array_equal(images.read_dicom(path), np.round((1 - y) * 255))
  no_window = xf.raw_dicom(str(tmp_path / 'm1b.dcm'), stored,
                           PhotometricInterpretation='MONOCHROME1', RescaleSlope=2,
                           RescaleIntercept=-100)
  want = np.round((1 - (value - value.min()) / (value.max() - value.min())) * 255)
  np.testing.assert_array_equal(images.read_dicom(no_window), want)


def test_a_voi_lut_applies_to_the_rescaled_values(tmp_path):
  lut = pydicom.Dataset()
  lut.LUTDescriptor = [4, 3, 16]  # 4 entries, the first for input value 3
  lut.LUTData = np.array([0, 100, 400, 1000], '<u2').tobytes()
  stored = np.arange(8, dtype=np.uint16).reshape(2, 4)
  path = xf.raw_dicom(str(tmp_path / 'lut.dcm'), stored, RescaleSlope=1, RescaleIntercept=2,
                      VOILUTSequence=[lut])
  # values 2..9: below the first input -> entry 0, 4 -> 100, 5 -> 400, from 6 on -> the last
  looked_up = np.array([[0, 0, 100, 400], [1000, 1000, 1000, 1000]])
  np.testing.assert_array_equal(images.read_dicom(path), np.round(looked_up / 1000 * 255))


def test_pydicoms_bundled_examples_read():
  ct = pydicom.dcmread(get_testdata_file('CT_small.dcm'))
  hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
  want = np.round((hu - hu.min()) / (hu.max() - hu.min()) * 255)
  np.testing.assert_array_equal(images.read_dicom(get_testdata_file('CT_small.dcm')), want)
  mr = pydicom.dcmread(get_testdata_file('MR_small.dcm'))
  c, w = float(mr.WindowCenter), float(mr.WindowWidth)
  want = np.round(np.clip((mr.pixel_array - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 255)
  np.testing.assert_array_equal(images.read_dicom(get_testdata_file('MR_small.dcm')), want)


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ('jpeg_ls', 'libjpeg', 'gdcm')),
                    reason='a JPEG-LS decoder is installed')
def test_compressed_dicom_without_a_decoder_names_the_package():
  with pytest.raises(Rejected, match='no decoder installed: install one of: .*pyjpegls'):
    images.read_dicom(get_testdata_file('MR_small_jpeg_ls_lossless.dcm'))


def test_corrupt_and_truncated_dicoms_are_rejected(tmp_path):
  good = xf.jpeg_dicom(str(tmp_path / 'g.dcm'), xf.shapes(1, 64)[0][0])
  data = open(good, 'rb').read()
  (tmp_path / 'cut.dcm').write_bytes(data[:len(data) - 300])
  (tmp_path / 'junk.dcm').write_bytes(b'\0' * 128 + b'DICM' + os.urandom(200))
  (tmp_path / 'text.dcm').write_bytes(b'not a dicom at all')
  for name in ('cut', 'junk', 'text'):
    with pytest.raises(Rejected, match='DICOM'):
      images.read_dicom(str(tmp_path / f'{name}.dcm'))


@pytest.mark.parametrize('stage', [1, 2])
def test_siim_tree_reads_back_its_masks_with_row_unions(tmp_path, stage):
  pictures, masks = xf.shapes(4, 1024, seed=stage)
  masks[3, 1000:, 1020:] = True  # a run touching the last pixel
  ids = xf.siim_tree(str(tmp_path), pictures, masks, stage=stage)
  text = open(tmp_path / ('train-rle.csv' if stage == 1 else 'stage_2_train.csv')).read()
  assert (' -1' in text) == (stage == 1) and len(text.splitlines()) > 5  # rows split in two
  got, quarantined = _read('siim', tmp_path, size=1024)
  assert quarantined == []
  for i, image_id in enumerate(ids):
    np.testing.assert_array_equal(got[image_id]['mask'], masks[i])
    assert got[image_id]['label'] == int(masks[i].any()) == got[image_id]['has_mask']
    assert got[image_id]['patient'] == ''  # SIIM's PatientID is random: grouped by pixels


def _siim_with_rows(tmp_path, rows, n_dicoms=3, size=1024):
  for i in range(n_dicoms):
    xf.jpeg_dicom(str(tmp_path / 'dicom-images-train' / 's' / f'{xf.siim_uid(i)}.dcm'),
                  np.full((size, size), 40 * i, np.uint8))
  with open(tmp_path / 'stage_2_train.csv', 'w') as f:
    f.write('ImageId,EncodedPixels\n' + ''.join(f'{u},{r}\n' for u, r in rows))


def test_siim_bad_rows_are_quarantined_with_reasons(tmp_path):
  u = xf.siim_uid
  _siim_with_rows(tmp_path, [
      (u(0), '1 2 3'),                  # odd tokens
      (u(1), '-1'), (u(1), '500 10'),   # one image, two labels
      (u(2), '1048570 10'),             # past the last pixel
      (u(9), '-1'),                     # no such DICOM
  ], n_dicoms=4)
  got, quarantined = _read('siim', tmp_path, encoding='relative')
  reasons = dict((r.split()[-1], why) for r, why in quarantined)
  assert 'odd number of tokens' in reasons[u(0)]
  assert reasons[u(1)] == 'duplicate id with a different label'
  assert 'past the 1048576 pixels' in reasons[u(2)]
  assert reasons[u(9)].startswith('missing file')
  assert reasons[u(3)].startswith('no label row')  # a DICOM nobody labelled
  assert got == {}


def test_siim_mask_of_another_size_and_overlaps_in_absolute_files(tmp_path):
  u = xf.siim_uid
  _siim_with_rows(tmp_path, [(u(0), '100 10 105 3'), (u(1), '10 5')], n_dicoms=2, size=512)
  got, quarantined = _read('siim', tmp_path, encoding='absolute')
  assert (f'row 2 {u(0)}', 'RLE runs overlap or are not in increasing order') in quarantined
  assert any('mask size 1024x1024 differs from image size 512x512' == why
             for _, why in quarantined)


def test_siim_auto_encoding_refuses_an_ambiguous_file(tmp_path):
  _siim_with_rows(tmp_path, [(xf.siim_uid(0), '100 5 200 5')], n_dicoms=1)
  with pytest.raises(BadInput, match='stage_2_train.csv: cannot tell the RLE encoding'):
    _read('siim', tmp_path)


def test_siim_one_based_absolute_rle_given_or_told_by_a_run_on_the_last_pixel(tmp_path):
  u = xf.siim_uid
  # 1-based: '1 1 1025 2' is pixel 0 and pixels 1024, 1025 (column 1, rows 0-1); '1048575 2'
  # the last two pixels (column 1023, rows 1022-1023), past the end when read 0-based.
  _siim_with_rows(tmp_path, [(u(0), '1 1 1025 2'), (u(1), '1048575 2')], n_dicoms=2)
  first, last = np.zeros((1024, 1024), bool), np.zeros((1024, 1024), bool)
  first[0, 0] = first[0:2, 1] = True
  last[1022:, 1023] = True
  for encoding in ('absolute1', 'auto'):
    got, quarantined = _read('siim', tmp_path, size=1024, encoding=encoding)
    assert quarantined == []
    np.testing.assert_array_equal(got[u(0)]['mask'], first)
    np.testing.assert_array_equal(got[u(1)]['mask'], last)
  got, quarantined = _read('siim', tmp_path, size=1024, encoding='absolute')
  assert [r for r, why in quarantined if 'past the 1048576 pixels' in why] == [f'row 3 {u(1)}']


def test_siim_png_layout_a_with_label_and_mask_faults(tmp_path):
  pictures, masks = xf.shapes(4, 64)
  rows = []
  for i in range(4):
    name = f'{i}_train_0_.png'
    xf.png(str(tmp_path / 'png_images' / name), pictures[i])
    xf.png(str(tmp_path / 'png_masks' / name), masks[i].astype(np.uint8) * 255)
    rows.append((name, f'1.2.{i}', int(masks[i].any())))
  rows[0] = (rows[0][0], rows[0][1], 1)  # positive, empty mask
  xf.png(str(tmp_path / 'png_masks' / rows[2][0]), masks[1].astype(np.uint8) * 128)  # on a
  # negative (image 2 is even, so its row says has_pneumo 0)
  (tmp_path / 'png_images' / 'bad.png').write_bytes(b'\x89PNG garbage')
  rows.append(('bad.png', '1.2.9', 0))
  with open(tmp_path / 'stage_1_train_images.csv', 'w') as f:
    f.write('new_filename,ImageId,has_pneumo\n' + ''.join(f'{a},{b},{c}\n' for a, b, c in rows))
  got, quarantined = _read('siim_png', tmp_path)
  reasons = {r: why for r, why in quarantined}
  assert reasons['stage_1_train_images.csv row 2'] == 'positive label without a mask'
  assert reasons['stage_1_train_images.csv row 4'] == 'mask on a negative label'
  assert reasons['stage_1_train_images.csv row 6'].startswith('unreadable image')
  assert sorted(got) == ['1.2.1', '1.2.3']
  np.testing.assert_array_equal(got['1.2.3']['mask'], masks[3])
  np.testing.assert_array_equal(got['1.2.1']['image'], pictures[1])


def test_siim_png_layout_b_labels_from_masks(tmp_path):
  pictures, masks = xf.shapes(4, 128)
  for i in range(4):
    folder = 'train' if i < 3 else 'test'
    xf.png(str(tmp_path / folder / f'id{i}.png'), pictures[i])
    if i != 2:
      xf.png(str(tmp_path / 'masks' / f'id{i}.png'), masks[i].astype(np.uint8) * 255)
  got, quarantined = _read('siim_png', tmp_path, size=128)
  assert quarantined == [('id2', 'no mask file in masks/ (the label is read from it)')]
  assert {k: v['label'] for k, v in got.items()} == {'id0': 0, 'id1': 1, 'id3': 1}
  np.testing.assert_array_equal(got['id3']['mask'], masks[3])


def _nih(tmp_path):
  pictures = xf.shapes(4, 64)[0]
  for i in range(3):  # image 3 is listed but missing
    xf.png(str(tmp_path / 'images_001' / 'images' / f'0000000{i}_000.png'), pictures[i])
  (tmp_path / 'Data_Entry_2017_v2020.csv').write_text(
      'Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View '
      'Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n'
      '00000000_000.png,Pneumothorax|Infiltration,0,7,058Y,M,PA,64,64,0.14,0.14\n'
      '00000001_000.png,No Finding,1,7,058Y,M,PA,64,64,0.14,0.14\n'
      '00000002_000.png,Pneumothorax,0,8,061Y,F,AP,64,64,0.14,0.14\n'
      '00000003_000.png,Effusion,0,9,030Y,F,AP,64,64,0.14,0.14\n'
      '00000004_000.png,Effusion\n')
  (tmp_path / 'BBox_List_2017.csv').write_text(
      'Image Index,Finding Label,Bbox [x,y,w,h],,,\n'
      '00000000_000.png,Pneumothorax,10.5,20.0,8.25,4.0\n'
      '00000000_000.png,Infiltrate,1,1,3,3\n')


def test_nih_boxes_become_masks_for_the_finding(tmp_path):
  _nih(tmp_path)
  got, quarantined = _read('nih', tmp_path)
  assert quarantined == [('row 5 00000003_000.png', 'missing file'),
                         ('row 6', '2 fields, too few')]
  want = np.zeros((64, 64), bool)
  want[20:24, 10:19] = True
  np.testing.assert_array_equal(got['00000000_000.png']['mask'], want)
  assert got['00000002_000.png']['label'] == 1 and not got['00000002_000.png']['has_mask']
  assert [got[k]['patient'] for k in sorted(got)] == ['7', '7', '8']
  infiltrate, _ = _read('nih', tmp_path, finding='Infiltrate')  # the box list's name
  want = np.zeros((64, 64), bool)
  want[1:4, 1:4] = True
  np.testing.assert_array_equal(infiltrate['00000000_000.png']['mask'], want)
  with pytest.raises(BadInput, match="unknown config.data.finding 'Lung'"):
    _read('nih', tmp_path, finding='Lung')


@pytest.mark.parametrize('form', ['segmentations', 'annotations'])
def test_chexlocalize_masks_for_the_task(tmp_path, form):
  pictures = xf.shapes(2, 48)[0]
  names = ['patient64541_study1_view1_frontal', 'patient64542_study1_view1_frontal']
  for name, picture in zip(names, pictures):
    patient, study, view = name.split('_', 2)
    path = tmp_path / 'CheXpert' / 'val' / patient / study / f'{view}.jpg'
    os.makedirs(path.parent, exist_ok=True)
    Image.fromarray(picture).save(path, quality=95)
  lesion = np.zeros((48, 48), bool)
  lesion[5:9, 30:40] = True
  if form == 'segmentations':
    truth = {}
    for name, m in zip(names, [lesion, np.zeros_like(lesion)]):
      rle = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
      truth[name] = {'Pneumothorax': {'size': rle['size'], 'counts': rle['counts'].decode()},
                     'Edema': {'size': rle['size'], 'counts': rle['counts'].decode()}}
  else:
    truth = {names[0]: {'img_size': [48, 48], 'Pneumothorax': [[[30, 5], [39, 5], [39, 8],
                                                               [30, 8]]]},
             names[1]: {'img_size': [48, 48]}}
  (tmp_path / f'gt_{form}_val.json').write_text(json.dumps(truth))
  got, quarantined = _read('chexlocalize', tmp_path, size=48)
  assert quarantined == []
  np.testing.assert_array_equal(got[names[0]]['mask'], lesion)
  assert got[names[0]]['label'] == 1 and got[names[1]]['label'] == 0
  assert got[names[0]]['patient'] == 'patient64541'


def test_any_csv_with_masks_rle_boxes_and_bad_rows(tmp_path):
  pictures, masks = xf.shapes(4, 32)
  for i in range(4):
    xf.png(str(tmp_path / 'img' / f'{i}.png'), pictures[i])
  xf.png(str(tmp_path / 'm' / '1.png'), masks[1].astype(np.uint8) * 255)
  rows = [{'image': 'img/0.png', 'label': '0', 'patient_id': 'a'},
          {'image': 'img/1.png', 'label': '1', 'mask': 'm/1.png', 'patient_id': 'a'},
          {'image': 'img/3.png', 'label': '1', 'rle': codecs.encode_rle(masks[3], 'absolute'),
           'patient_id': 'b'},
          {'image': 'img/2.png', 'label': '1', 'boxes': '2 3 4 5;20 20 1 1', 'patient_id': 'c'},
          {'image': 'img/2.png', 'label': '0', 'patient_id': 'c'},
          {'image': 'img/5.png', 'label': 'yes'},
          {'image': 'img/6.png', 'label': '1', 'boxes': '1 2 3'},
          {'image': '', 'label': '1'}]
  with open(tmp_path / 'labels.csv', 'w', newline='') as f:
    w = csv.DictWriter(f, ['image', 'label', 'mask', 'rle', 'boxes', 'patient_id'])
    w.writeheader()
    w.writerows(rows)
  got, quarantined = _read('csv', tmp_path, size=32, encoding='absolute')
  reasons = {r: why for r, why in quarantined}
  assert reasons['labels.csv row 5 img/2.png'] == 'duplicate id with a different label'
  assert reasons['labels.csv row 6 img/2.png'] == 'duplicate id with a different label'
  assert reasons['row 7 img/5.png'] == "label 'yes' is not 0 or 1"
  assert reasons['row 8 img/6.png'] == 'boxes are not "x y w h;x y w h..."'
  assert reasons['row 9'] == 'no image in the row'
  np.testing.assert_array_equal(got['img/1.png']['mask'], masks[1])
  np.testing.assert_array_equal(got['img/3.png']['mask'], masks[3])
  assert not got['img/0.png']['has_mask'] and got['img/0.png']['patient'] == 'a'
