"""Preparing a real source end to end on a SIIM fixture tree: the TFDS splits hold the decoded,
resized images and masks; groups never cross splits; the split and quarantine tables; reruns,
interruptions (a SIGKILLed one cleaned up by the next), strict mode, parallel decoding and the
prepare command. NIH (boxes), CheXlocalize (COCO RLE and polygons) and both SIIM PNG layouts
prepared and read back against their fixtures' masks, labels and patients."""

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cam_jax import data, presets
from cam_jax.core.errors import BadInput
from cam_jax.data import images, real_tfds, sources, splits
from cam_jax.testing import xray_files as xf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 24


@pytest.fixture(scope='module')
def siim_root(tmp_path_factory):
  """24 SIIM-style images (every odd one positive) where images 4 and 5 have identical pixels
  and image 6 is listed twice with conflicting labels."""
  root = tmp_path_factory.mktemp('siim')
  pictures, masks = xf.shapes(N, 1024, seed=3)
  pictures[5] = pictures[4]
  masks[5] = masks[4]
  ids = xf.siim_tree(str(root), pictures, masks)
  with open(root / 'train-rle.csv', 'a') as f:
    f.write(f'{ids[6]}, 10 20\n')
  return root, pictures, masks, ids


def _config(root, **fields):
  c = presets.data_config('tiny', 'siim')
  c.update(dict(manual_dir=str(root), validation_fraction=0.25, test_fraction=0.25,
                num_workers=1, progress=False), **fields)
  return c


def _splits_table(path):
  with open(os.path.join(path, real_tfds.SPLIT_FILE)) as f:
    return list(csv.DictReader(f))


def test_prepared_splits_hold_resized_pixels_and_masks(siim_root, tmp_path):
  root, pictures, masks, ids = siim_root
  config = _config(root)
  summary = data.prepare(config, str(tmp_path))
  assert summary['fresh']
  counts = summary['splits']
  assert sum(c['records'] for c in counts.values()) == N - 1  # image 6 quarantined
  assert summary['quarantine_reasons'] == {'duplicate id with a different label': 1}
  assert summary['duplicates'] == {'groups': 1, 'images': 2}
  lines = open(root / 'train-rle.csv').read().splitlines()
  rows = ', '.join(str(n + 1) for n, line in enumerate(lines) if line.startswith(ids[6]))
  with open(os.path.join(summary['path'], real_tfds.QUARANTINE_FILE)) as f:
    assert list(csv.reader(f))[1][1:] == [f'rows {rows} {ids[6]}',
                                          'duplicate id with a different label']
  seen = 0
  for split in data.SPLITS:
    source = data.open_split(config, split, str(tmp_path))
    assert len(source) == counts[split]['records']
    for k in range(len(source)):
      rec = source[k]
      i = ids.index(data.pipeline.as_text(rec['id']))
      decoded = np.asarray(Image.open(io.BytesIO(xf.jpeg_bytes(pictures[i]))))
      want = Image.fromarray(decoded).resize((32, 32), Image.Resampling.LANCZOS)
      np.testing.assert_array_equal(rec['image'][..., 0], np.asarray(want))
      area = masks[i].reshape(32, 32, 32, 32).mean(axis=(1, 3)) >= 0.5  # 32 x 32 blocks
      np.testing.assert_array_equal(rec['mask'], area)
      assert int(rec['label']) == int(masks[i].any()) == bool(rec['has_mask'])
      seen += 1
  assert seen == N - 1


def test_groups_never_cross_splits_and_the_seed_fixes_the_split(siim_root, tmp_path):
  root, _, _, ids = siim_root
  tables = {}
  for seed in (0, 0, 1):
    c = _config(root, seed=seed)
    path = data.prepare(c, str(tmp_path / f'd{len(tables)}'))['path']
    tables[len(tables)] = rows = _splits_table(path)
    split_of = {r['id']: r['split'] for r in rows}
    assert split_of[ids[4]] == split_of[ids[5]]  # identical pixels: one group, one split
    by_group = {}
    for r in rows:
      by_group.setdefault(r['group'], set()).add(r['split'])
    assert all(len(s) == 1 for s in by_group.values())
  assert tables[0] == tables[1] and tables[0] != tables[2]


def test_split_assignment_is_by_whole_group_and_stratified():
  rng = np.random.default_rng(0)
  patients = [f'p{rng.integers(300)}' for _ in range(2000)]
  pixels = [''] * 2000
  pixels[10] = pixels[20] = 'same'  # two patients joined by one duplicated image
  group = splits.groups(patients, pixels)
  assert group[10] == group[20] and group[10] == group[patients.index(patients[20])]
  labels = rng.random(2000) < 0.2
  split = splits.assign(group, labels, (0.8, 0.1, 0.1), seed=4)
  for g in np.unique(group):
    assert len(set(split[group == g])) == 1
  for s, frac in zip(splits.SPLITS, (0.8, 0.1, 0.1)):
    assert abs((split == s).mean() - frac) < 0.05
    assert abs(labels[split == s].mean() - labels.mean()) < 0.08
  np.testing.assert_array_equal(split, splits.assign(group, labels, (0.8, 0.1, 0.1), seed=4))


def test_a_split_file_is_reused_and_a_rerun_is_a_no_op(siim_root, tmp_path):
  root = siim_root[0]
  first = data.prepare(_config(root, seed=5), str(tmp_path / 'a'))
  stamp = os.path.getmtime(os.path.join(first['path'], real_tfds.SPLIT_FILE))
  again = data.prepare(_config(root, seed=5), str(tmp_path / 'a'))
  assert not again['fresh'] and again['splits'] == first['splits']
  assert os.path.getmtime(os.path.join(first['path'], real_tfds.SPLIT_FILE)) == stamp
  reused = data.prepare(_config(root, split_file=os.path.join(first['path'], 'splits.csv')),
                        str(tmp_path / 'b'))
  assert [(r['id'], r['split']) for r in _splits_table(reused['path'])] == \
      [(r['id'], r['split']) for r in _splits_table(first['path'])]


def test_an_interrupted_preparation_leaves_nothing_complete(siim_root, tmp_path, monkeypatch):
  root = siim_root[0]
  real_decode, calls = sources.decode, []

  def dying(*args):
    calls.append(1)
    if len(calls) == 10:
      raise KeyboardInterrupt
    return real_decode(*args)

  monkeypatch.setattr(sources, 'decode', dying)
  with pytest.raises(KeyboardInterrupt):
    data.prepare(_config(root), str(tmp_path))
  monkeypatch.setattr(sources, 'decode', real_decode)
  with pytest.raises(BadInput):  # strict: the conflicting rows stop it, still nothing complete
    data.prepare(_config(root, strict=True), str(tmp_path))
  leftovers = [p.name for p in tmp_path.rglob('*') if p.is_dir()]
  assert not any(n == '1.0.0' or n.startswith('staging.') for n in leftovers), leftovers
  assert data.prepare(_config(root), str(tmp_path))['fresh']


def test_strict_names_the_first_quarantined_record(siim_root, tmp_path):
  with pytest.raises(BadInput, match=r'train-rle.csv: rows \d+, \d+ .*: duplicate id with a '
                     'different label \\(strict'):
    data.prepare(_config(siim_root[0], strict=True), str(tmp_path))


def test_parallel_decoding_matches_one_process(siim_root, tmp_path):
  one = data.open_split(_config(siim_root[0]), 'train', str(tmp_path / 'one'))
  two = data.open_split(_config(siim_root[0], num_workers=2), 'train', str(tmp_path / 'two'))
  assert len(one) == len(two)
  by_id = {data.pipeline.as_text(two[k]['id']): two[k] for k in range(len(two))}
  for k in range(len(one)):
    rec = one[k]
    other = by_id[data.pipeline.as_text(rec['id'])]
    np.testing.assert_array_equal(rec['image'], other['image'])
    np.testing.assert_array_equal(rec['mask'], other['mask'])


def test_a_data_config_file_names_the_data_set_a_study_reads(tmp_path):
  prepared = presets.prepare_config('tiny', 'siim')
  studied = presets.data_config('tiny', 'siim')
  for c in (prepared, studied):
    c.manual_dir = str(tmp_path)
  prepared.update(data_dir='/elsewhere', num_workers=3, strict=True, progress=False)
  assert real_tfds.builder_config(prepared).name == real_tfds.builder_config(studied).name
  studied.mask_resize = 'nearest'
  assert real_tfds.builder_config(prepared).name != real_tfds.builder_config(studied).name


def test_missing_manual_dir_and_bad_settings_are_bad_input(tmp_path):
  with pytest.raises(BadInput, match='(?s)manual_dir is empty .*dicom-images-train'):
    data.open_split(presets.data_config('tiny', 'siim'), 'train', str(tmp_path))
  with pytest.raises(BadInput, match='is not a directory'):
    data.prepare(_config(tmp_path / 'nowhere'), str(tmp_path))
  with pytest.raises(BadInput, match="mask_resize 'cubic'; choose one of: nearest, area"):
    data.prepare(_config(tmp_path, mask_resize='cubic'), str(tmp_path))
  with pytest.raises(BadInput, match="unknown data set 'mimic'"):
    presets.data_config('', 'mimic')


def test_resize_mask_nearest_and_area_by_hand():
  mask = np.zeros((4, 4), bool)
  mask[0, 0:2] = mask[1, 0] = True  # top-left 2x2 block 3/4 covered, top-right 0
  np.testing.assert_array_equal(images.resize_mask(mask, 2, 'area'), [[True, False],
                                                                      [False, False]])
  assert images.resize_mask(mask, 2, 'nearest').shape == (2, 2)


@pytest.mark.slow  # three command-line runs: about 20 s
def test_the_prepare_command_prints_the_summary(siim_root, tmp_path):
  cmd = [sys.executable, '-m', 'launch.prepare', '--config=configs/data/siim.py:tiny',
         f'--config.manual_dir={siim_root[0]}', f'--config.data_dir={tmp_path}',
         '--config.validation_fraction=0.25', '--config.test_fraction=0.25',
         '--config.progress=False']
  env = {**os.environ, 'XLA_FLAGS': ''}
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'siim: prepared: ' in out.stdout
  assert 'duplicates: 2 images in 1 groups' in out.stdout
  assert 'quarantined: 1 records' in out.stdout and '1  duplicate id with a' in out.stdout
  assert 'train: 11 records' in out.stdout or 'train: 12 records' in out.stdout
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
  assert 'already prepared, nothing to do' in again.stdout
  bad = subprocess.run(cmd[:4] + [f'--config.manual_dir={tmp_path}/none'], cwd=ROOT,
                       capture_output=True, text=True, env=env)
  assert bad.returncode == 2 and bad.stderr.startswith('error: manual_dir ')


def test_a_sigkilled_preparation_is_cleaned_up_by_the_next(siim_root, tmp_path, caplog):
  """A prepare killed outright leaves its staging and TFDS incomplete folders; the next prepare
  of the data set, holding its lock, removes them, says so, and prepares it."""
  script = ('import os, signal, sys\n'
            'from cam_jax import data, presets\n'
            'from cam_jax.data import sources\n'
            "c = presets.data_config('tiny', 'siim')\n"
            "c.update(manual_dir=sys.argv[1], validation_fraction=0.25, test_fraction=0.25, "
            'num_workers=1, progress=False)\n'
            'real, calls = sources.decode, []\n'
            'def dying(*args):\n'
            '  calls.append(1)\n'
            '  if len(calls) == 5:\n'
            '    os.kill(os.getpid(), signal.SIGKILL)\n'
            '  return real(*args)\n'
            'sources.decode = dying\n'
            'data.prepare(c, sys.argv[2])\n')
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run([sys.executable, '-c', script, str(siim_root[0]), str(tmp_path)],
                        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == -9, proc.stderr[-2000:]
  left = sorted(str(p) for p in tmp_path.rglob('*') if p.is_dir() and
                p.name.startswith(('staging.', 'incomplete.')))
  assert [os.path.basename(p).split('.')[0] for p in left] == ['incomplete', 'staging'], left
  with caplog.at_level('WARNING', logger='cam_jax.data.cache'):
    summary = data.prepare(_config(siim_root[0]), str(tmp_path))
  assert summary['fresh'] and sum(c['records'] for c in summary['splits'].values()) == N - 1
  version = summary['path'].rstrip('/')
  assert [r.getMessage() for r in caplog.records if r.name == 'cam_jax.data.cache'] == [
      f'removed {p}, left by an interrupted preparation of {version}' for p in left]
  assert not [p for p in tmp_path.rglob('*') if p.name.startswith(('staging.', 'incomplete.'))]


@pytest.mark.slow  # two processes, each importing the stack: about 20 s
def test_two_concurrent_prepares_of_one_data_set_take_turns(siim_root, tmp_path):
  script = ('import sys\n'
            'from cam_jax import data, presets\n'
            "c = presets.data_config('tiny', 'siim')\n"
            "c.update(manual_dir=sys.argv[1], validation_fraction=0.25, test_fraction=0.25, "
            'num_workers=1, progress=False)\n'
            's = data.prepare(c, sys.argv[2])\n'
            "print('fresh', s['fresh'], sorted(s['splits']['test'].items()))\n")
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  procs = [subprocess.Popen([sys.executable, '-c', script, str(siim_root[0]), str(tmp_path)],
                            env=env, text=True, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE) for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
  lines = sorted(next(l for l in out.splitlines() if l.startswith('fresh')) for out, _ in outs)
  assert lines[0].startswith('fresh False') and lines[1].startswith('fresh True')
  assert lines[0].split(' ', 2)[2] == lines[1].split(' ', 2)[2]
  assert not [p for p in tmp_path.rglob('*') if 'incomplete' in p.name or 'staging' in p.name]


def test_a_csv_split_column_is_kept_and_must_not_split_a_patient(tmp_path):
  pictures, masks = xf.shapes(6, 40)
  rows = []
  for i in range(6):
    xf.png(str(tmp_path / 'in' / 'img' / f'{i}.png'), pictures[i])
    xf.png(str(tmp_path / 'in' / 'm' / f'{i}.png'), masks[i].astype(np.uint8) * 255)
    rows.append([f'img/{i}.png', int(masks[i].any()), f'm/{i}.png', f'p{i // 2}',
                 data.SPLITS[i // 2]])

  def write(table):
    with open(tmp_path / 'in' / 'labels.csv', 'w', newline='') as f:
      csv.writer(f).writerows([['image', 'label', 'mask', 'patient_id', 'split']] + table)

  write(rows)
  config = presets.data_config('tiny', 'csv')
  config.update(manual_dir=str(tmp_path / 'in'), num_workers=1, progress=False)
  path = data.prepare(config, str(tmp_path / 'a'))['path']
  assert {r['id']: r['split'] for r in _splits_table(path)} == {r[0]: r[4] for r in rows}
  rows[1][4] = 'test'  # patient p0 in train and test
  write(rows)
  with pytest.raises(BadInput, match=r"row 3 img/1.png: .* in train and test \(patient 'p0'\)"):
    data.prepare(config, str(tmp_path / 'b'))


def _read_back(config, data_dir):
  """The summary, id -> (split, record) over every prepared split, and id -> splits.csv row."""
  summary = data.prepare(config, data_dir)
  out = {}
  for split in data.SPLITS:
    source = data.open_split(config, split, data_dir)
    for k in range(len(source)):
      out[data.pipeline.as_text(source[k]['id'])] = (split, source[k])
  return summary, out, {r['id']: r for r in _splits_table(summary['path'])}


def _rectangle(r0, r1, c0, c1, size=64):
  mask = np.zeros((size, size), bool)
  mask[r0:r1, c0:c1] = True
  return mask


def _at_32(mask):
  """A 64 px fixture mask as area-resized to 32 px: 2 x 2 blocks at least half covered."""
  return mask.reshape(32, 2, 32, 2).mean(axis=(1, 3)) >= 0.5


def _lanczos_32(picture):
  return np.asarray(Image.fromarray(picture).resize((32, 32), Image.Resampling.LANCZOS))


def _check_records(summary, out, table, ids, masks, labels, pictures=None):
  """Every fixture image prepared once, in the split splits.csv names, with its label, mask
  (and, for lossless files, its resized pixels)."""
  assert summary['quarantined'] == 0 and sorted(out) == sorted(ids) == sorted(table)
  for i, image_id in enumerate(ids):
    split, rec = out[image_id]
    assert table[image_id]['split'] == split
    assert int(rec['label']) == labels[i] == int(table[image_id]['label'])
    assert bool(rec['has_mask']) == bool(masks[i].any()) == (table[image_id]['has_mask'] == 'True')
    np.testing.assert_array_equal(rec['mask'], _at_32(masks[i]))
    if pictures is not None:
      np.testing.assert_array_equal(rec['image'][..., 0], _lanczos_32(pictures[i]))


def _prepare_config(name, root, **fields):
  c = presets.data_config('tiny', name)
  c.update(dict(manual_dir=str(root), validation_fraction=0.25, test_fraction=0.25,
                num_workers=1, progress=False), **fields)
  return c


def test_nih_prepared_boxes_classification_only_images_and_patient_splits(tmp_path):
  pictures = xf.shapes(16, 64, seed=5)[0]
  patients = [f'{100 + i // 2}' for i in range(16)]  # two images per patient
  findings = ['No Finding'] * 16
  for i, found in {0: 'Pneumothorax', 2: 'Pneumothorax|Effusion', 3: 'Effusion',
                   4: 'Pneumothorax', 6: 'Pneumothorax', 7: 'Infiltration',
                   8: 'Pneumothorax', 12: 'Pneumothorax'}.items():
    findings[i] = found
  boxes = {0: [('Pneumothorax', 10, 20, 8, 4)], 2: [('Pneumothorax', 30, 5, 12, 10)],
           3: [('Effusion', 2, 2, 20, 20)], 6: [('Pneumothorax', 1, 40, 20, 16),
                                                ('Pneumothorax', 40, 40, 6, 6)],
           7: [('Infiltrate', 5, 5, 9, 9)], 12: [('Pneumothorax', 33, 9, 14, 21)]}
  ids = xf.nih_tree(str(tmp_path / 'nih'), pictures, findings, patients, boxes)
  masks = np.zeros((16, 64, 64), bool)  # only the Pneumothorax boxes, x y w h by hand
  masks[0, 20:24, 10:18] = masks[2, 5:15, 30:42] = masks[12, 9:30, 33:47] = True
  masks[6, 40:56, 1:21] = masks[6, 40:46, 40:46] = True
  labels = [int('Pneumothorax' in f) for f in findings]
  summary, out, table = _read_back(_prepare_config('nih', tmp_path / 'nih'), str(tmp_path))
  _check_records(summary, out, table, ids, masks, labels, pictures)
  for i in (4, 8):  # positive, no box: kept for classification, marked so
    assert labels[i] == 1 and not out[ids[i]][1]['has_mask'] and not out[ids[i]][1]['mask'].any()
  assert sum(s['with_mask'] for s in summary['splits'].values()) == 4
  assert sum(s['positive'] for s in summary['splits'].values()) == 6
  split_of_patient = {}
  for i, image_id in enumerate(ids):
    assert table[image_id]['patient'] == patients[i]
    assert split_of_patient.setdefault(patients[i], out[image_id][0]) == out[image_id][0]
  assert len(set(split_of_patient.values())) == 3


@pytest.mark.parametrize('form', ['segmentations', 'annotations'])
def test_chexlocalize_prepared_masks_of_the_task(tmp_path, form):
  pictures = xf.shapes(8, 64, seed=6)[0]
  lesions = [None, (5, 9, 30, 40), None, (20, 41, 3, 17), None, (40, 60, 40, 63), None,
             (0, 12, 50, 64)]
  ids = xf.chexlocalize_tree(str(tmp_path / 'cx'), pictures, lesions, form)
  masks = np.array([_rectangle(*r) if r else np.zeros((64, 64), bool) for r in lesions])
  summary, out, table = _read_back(_prepare_config('chexlocalize', tmp_path / 'cx'),
                                   str(tmp_path))
  _check_records(summary, out, table, ids, masks, [int(r is not None) for r in lesions])
  assert [table[i]['patient'] for i in ids] == [f'patient{64541 + k}' for k in range(8)]


@pytest.mark.parametrize('layout', ['a', 'b'])
def test_siim_png_layouts_prepared_with_their_masks(tmp_path, layout):
  pictures = xf.shapes(8, 64, seed=8)[0]
  rectangles = [None, (3, 20, 10, 31), None, (33, 50, 2, 9), None, (0, 64, 60, 64), None,
                (10, 11, 10, 12)]
  masks = np.array([_rectangle(*r) if r else np.zeros((64, 64), bool) for r in rectangles])
  ids = xf.siim_png_tree(str(tmp_path / 'png'), pictures, masks, layout)
  summary, out, table = _read_back(_prepare_config('siim_png', tmp_path / 'png'), str(tmp_path))
  _check_records(summary, out, table, ids, masks, [int(r is not None) for r in rectangles],
                 pictures)
