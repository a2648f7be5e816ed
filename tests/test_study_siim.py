"""The tiny study on a SIIM-style fixture tree (JPEG DICOMs and stage-1 RLE made from phantom
images and masks): prepare, train, CAM, score and report, through ``configs/study_siim.py``."""

import os

import numpy as np
import pandas as pd
import pytest

from cam_jax import data, models, report
from cam_jax.data import phantom
from cam_jax.models import registry
from cam_jax.study import run_study
from cam_jax.testing import xray_files as xf
from configs import study_phantom, study_qiu2023, study_siim

pytestmark = pytest.mark.slow  # the whole pipeline: minutes

N = 128


def test_the_siim_study_shares_everything_past_the_source():
  siim, embedded = study_siim.get_config('tiny'), study_phantom.get_config('tiny')
  assert siim.data.name == 'siim' and embedded.data.name == 'phantom'
  assert (siim.train.augment, embedded.train.augment) == ('crop_rotate', 'shift')
  siim.data, siim.train.augment = embedded.data, 'shift'
  assert siim.to_dict() == embedded.to_dict()


def test_the_paper_protocol_is_the_large_study_on_siim_with_the_paper_zoo():
  config = study_qiu2023.get_config()
  large = study_siim.get_config('large')
  assert config.data.to_dict() == study_siim.get_config().data.to_dict()  # 224 px
  assert config.models.split(',') == ['vgg16_bn', 'vgg19_bn', 'resnet18', 'resnet34',
                                      'resnet50', 'resnet101', 'resnet152', 'vit_b16', 'vit_l16']
  assert all(m in models.names() for m in config.models.split(','))
  config.models, config.data = large.models, large.data
  assert config.to_dict() == large.to_dict()
  assert config.seeds == 3 and config.cam.methods == 'gradcam,gradcam++,hirescam,eigencam'
  # ViT-S/16 is left out: it has ViT-B/16's 12 blocks, so the same depth.
  assert registry.VITS['vit_s16'][2] == registry.VITS['vit_b16'][2] == 12
  assert study_qiu2023.get_config('tiny').to_dict() == study_siim.get_config('tiny').to_dict()


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
  names = [f'{a}_s{s}' for s in (0, 1) for a in ('vgg_tiny_1', 'vgg_tiny_2', 'vit_tiny_1',
                                                  'vit_tiny_2')]
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
  for arch, depth in (('vgg_tiny_1', 7), ('vgg_tiny_2', 11), ('vit_tiny_1', 9),
                      ('vit_tiny_2', 13)):
    assert f'| {arch} ({depth}) | gradcam |' in text
  on_disk = pd.read_csv(os.path.join(workdir, 'cells', 'vgg_tiny_1_s0', 'records.csv'))
  assert len(on_disk) == test['records']
