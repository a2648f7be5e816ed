"""The tiny study on a SIIM-style fixture tree (JPEG DICOMs and stage-1 RLE made from phantom
images and masks): prepare, train, CAM, score and report, through ``configs/study_siim.py``."""

import os

import numpy as np
import pandas as pd
import pytest

from cam_jax import data, report
from cam_jax.data import phantom
from cam_jax.study import run_study
from cam_jax.testing import xray_files as xf
from configs import study_phantom, study_siim

pytestmark = pytest.mark.slow  # the whole pipeline: minutes

N = 128


def test_the_siim_study_shares_everything_past_the_source():
  siim, embedded = study_siim.get_config('tiny'), study_phantom.get_config('tiny')
  assert siim.data.name == 'siim' and embedded.data.name == 'phantom'
  assert (siim.train.augment, embedded.train.augment) == ('crop_rotate', 'shift')
  siim.data, siim.train.augment = embedded.data, 'shift'
  assert siim.to_dict() == embedded.to_dict()


def test_tiny_siim_study_end_to_end(tmp_path, data_dir):
  spec = phantom.PhantomSpec(image_size=256)
  made = phantom.generate(spec, seed=0, start=0, count=N)
  pictures = np.round(made['image'] * 255).astype(np.uint8).repeat(4, 1).repeat(4, 2)
  masks = made['mask'].repeat(4, 1).repeat(4, 2)
  ids = xf.siim_tree(str(tmp_path / 'siim'), pictures, masks)

  config = study_siim.get_config('tiny')
  config.data_dir = data_dir
  config.data.manual_dir = str(tmp_path / 'siim')
  config.data.update(validation_fraction=0.25, test_fraction=0.25, progress=False)
  workdir = str(tmp_path / 'study')
  records = run_study(config, workdir, log=lambda m: None)

  summary = data.prepare(config.data, data_dir)
  test = summary['splits']['test']
  assert summary['quarantined'] == 0 and sum(s['records'] for s in
                                             summary['splits'].values()) == N
  names = ['vgg_tiny', 'resnet_tiny', 'vit_tiny']
  assert list(records['model'].unique()) == names + [report.BASELINE]
  assert (records.groupby('model').size() == test['records']).all()
  first = records[records['model'] == names[0]]
  assert set(first['id']) <= set(ids)
  assert int(first['has_mask'].sum()) == test['with_mask'] == test['positive']
  label_of = dict(zip(ids, made['label']))
  assert (first['label'].to_numpy() == [label_of[i] for i in first['id']]).all()
  scored = first[first['has_mask']]
  assert scored['ehr_auc'].notna().all() and first[~first['has_mask']]['ehr_auc'].isna().all()
  text = open(os.path.join(workdir, 'report.md')).read()
  assert f'Data: siim from {tmp_path / "siim"}, resized to 32 px' in text
  for name in names:
    assert f'| {name} |' in text
  on_disk = pd.read_csv(os.path.join(workdir, 'records.csv'))
  assert len(on_disk) == 4 * test['records']
