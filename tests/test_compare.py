import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp_stats
from sklearn import metrics as sk_metrics

from cam_jax.analysis.compare import compare_models
from cam_jax.analysis.statistics import holm, paired_delong

N = 60
DEPTH = {'vgg11': 11, 'vgg16': 16, 'resnet50': 50, 'resnet101': 101}


def _records(names=tuple(DEPTH), seed=0):
  """Per-image records of models scored on the same images, each model's rows shuffled.

  ehr_auc rises with depth by far more than its per-image noise; model k drops the mask of image
  k (so only images with a mask in every model count for localisation metrics).
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, N)
  has_mask = labels == 1
  hard = rng.random(N)
  out = {}
  for k, name in enumerate(names):
    mask = has_mask.copy()
    mask[np.flatnonzero(has_mask)[k]] = False
    frame = pd.DataFrame({
        'id': [f'img{i:03d}' for i in range(N)],
        'label': labels,
        'prob': np.clip(0.55 * labels + 0.5 * rng.random(N) - 0.03 * k, 0, 1),
        'has_mask': mask,
        'ehr_auc': np.where(mask, 0.2 * k + hard + rng.uniform(0, 0.05, N), np.nan),
        'pointing_game': np.where(mask, (rng.random(N) < 0.4 + 0.1 * k).astype(float), np.nan),
        'flags': '',
    })
    out[name] = frame.sample(frac=1.0, random_state=k).reset_index(drop=True)
  return out


def _aligned(records):
  """Independent alignment by id: one wide frame, a column per (model, field)."""
  wide = None
  for name, frame in records.items():
    part = frame.set_index('id').add_prefix(f'{name}.')
    wide = part if wide is None else wide.join(part, how='inner')
  return wide.sort_index()


def test_paired_table_matches_sklearn_scipy_on_aligned_images():
  records = _records()
  names = list(records)
  out = compare_models(records, depth=DEPTH, metrics=['accuracy', 'roc_auc', 'ehr_auc'],
                       n_resamples=200)
  wide = _aligned(records)
  labels = wide['vgg11.label'].to_numpy()
  masked = np.logical_and.reduce([wide[f'{m}.has_mask'].to_numpy() for m in names])
  assert masked.sum() == labels.sum() - len(names)
  acc = {m: sk_metrics.accuracy_score(labels, wide[f'{m}.prob'] >= 0.5) for m in names}
  auc = {m: sk_metrics.roc_auc_score(labels, wide[f'{m}.prob']) for m in names}
  ehr = {m: wide[f'{m}.ehr_auc'].to_numpy()[masked] for m in names}

  models = out['models'].set_index(['metric', 'model'])
  for m in names:
    assert models.loc[('accuracy', m), 'value'] == pytest.approx(acc[m])
    assert models.loc[('roc_auc', m), 'value'] == pytest.approx(auc[m])
    assert models.loc[('ehr_auc', m), 'value'] == pytest.approx(ehr[m].mean())
    assert models.loc[('ehr_auc', m), 'n'] == masked.sum()
    assert models.loc[('accuracy', m), 'n'] == N
  assert (models['low'] <= models['value']).all() and (models['value'] <= models['high']).all()

  paired = out['paired']
  assert len(paired) == 3 * 6
  for metric, group in paired.groupby('metric'):
    assert group['p_holm'].to_numpy() == pytest.approx(holm(group['p'].to_numpy()))
  for _, row in paired.iterrows():
    a, b = row['a'], row['b']
    if row['metric'] == 'ehr_auc':
      assert row['difference'] == pytest.approx(ehr[a].mean() - ehr[b].mean())
      assert row['p'] == pytest.approx(sp_stats.wilcoxon(ehr[a] - ehr[b]).pvalue)
      assert row['n'] == masked.sum() and row['test'] == 'wilcoxon'
    elif row['metric'] == 'accuracy':
      assert row['difference'] == pytest.approx(acc[a] - acc[b])
      correct = [(wide[f'{m}.prob'].to_numpy() >= 0.5) == labels for m in (a, b)]
      d = correct[0].astype(float) - correct[1]
      expected = 1.0 if not d.any() else sp_stats.wilcoxon(d).pvalue
      assert row['p'] == pytest.approx(expected) and row['n'] == N
    else:
      assert row['difference'] == pytest.approx(auc[a] - auc[b])
      ref = paired_delong(labels, {a: wide[f'{a}.prob'], b: wide[f'{b}.prob']}).iloc[0]
      assert row['p'] == pytest.approx(ref['p']) and row['test'] == 'delong'
    assert row['low'] <= row['difference'] <= row['high']
  # ehr_auc rises by 0.2 per model step with per-image noise 0.05: every CI excludes 0.
  ehr_rows = paired[paired['metric'] == 'ehr_auc']
  assert (ehr_rows['high'] < 0).all() and (ehr_rows['p_holm'] < 0.01).all()


def test_correlation_table_depth_monotone_and_accuracy_matches_spearmanr():
  records = _records()
  out = compare_models(records, depth=DEPTH, metrics=['accuracy', 'ehr_auc', 'pointing_game'],
                       n_resamples=200)
  corr = out['correlation'].set_index(['metric', 'x'])
  assert list(corr.index) == [('accuracy', 'depth'), ('ehr_auc', 'depth'),
                              ('ehr_auc', 'accuracy'), ('pointing_game', 'depth'),
                              ('pointing_game', 'accuracy')]
  row = corr.loc[('ehr_auc', 'depth')]
  assert row['rho'] == 1.0 and row['low'] <= 1.0 <= row['high'] and row['low'] == 1.0
  assert row['n_models'] == 4 and row['n_resamples'] == 200 and row['n_skipped'] == 0
  models = out['models'].set_index(['metric', 'model'])
  names = list(DEPTH)
  for metric in ('ehr_auc', 'pointing_game'):
    expected = sp_stats.spearmanr([models.loc[('accuracy', m), 'value'] for m in names],
                                  [models.loc[(metric, m), 'value'] for m in names]).statistic
    row = corr.loc[(metric, 'accuracy')]
    assert row['rho'] == pytest.approx(expected)
    assert row['low'] <= row['high'] and -1 <= row['low'] and row['high'] <= 1


def test_row_order_does_not_matter():
  records = _records()
  first = compare_models(records, depth=DEPTH, metrics=['roc_auc', 'pointing_game'],
                         n_resamples=50)
  reordered = dict(records)
  reordered['resnet50'] = records['resnet50'].sort_values('id')
  second = compare_models(reordered, depth=DEPTH, metrics=['roc_auc', 'pointing_game'],
                          n_resamples=50)
  for key in first:
    pd.testing.assert_frame_equal(first[key], second[key])


def test_two_models_give_no_correlation_rows():
  records = _records(names=('vgg11', 'vgg16'))
  out = compare_models(records, depth=DEPTH, metrics=['ehr_auc'], n_resamples=20)
  assert len(out['paired']) == 1 and out['correlation'].empty
  assert 'rho' in out['correlation'].columns


def test_bad_inputs_raise():
  records = _records()
  short = dict(records, resnet50=records['resnet50'].iloc[3:])
  with pytest.raises(ValueError, match="'vgg11' and 'resnet50'.*3 ids"):
    compare_models(short, depth=DEPTH, metrics=['accuracy'])
  renamed = records['vgg16'].copy()
  renamed.loc[:1, 'id'] = ['other1', 'other2']
  with pytest.raises(ValueError, match="'vgg11' and 'vgg16'.*4 ids"):
    compare_models(dict(records, vgg16=renamed), depth=DEPTH, metrics=['accuracy'])
  relabelled = records['vgg16'].copy()
  relabelled.loc[0, 'label'] = 1 - relabelled.loc[0, 'label']
  with pytest.raises(ValueError, match='1 images different labels'):
    compare_models(dict(records, vgg16=relabelled), depth=DEPTH, metrics=['accuracy'])
  twice = pd.concat([records['vgg16'], records['vgg16'].iloc[:2]])
  with pytest.raises(ValueError, match="'vgg16' repeat 2 ids"):
    compare_models(dict(records, vgg16=twice), depth=DEPTH, metrics=['accuracy'])
  with pytest.raises(ValueError, match="depth is missing for models \\['resnet101'\\]"):
    compare_models(records, depth={k: DEPTH[k] for k in list(DEPTH)[:3]}, metrics=['accuracy'])
  with pytest.raises(ValueError, match="metric 'dice'"):
    compare_models(records, depth=DEPTH, metrics=['dice'])
  with pytest.raises(ValueError, match='distinct'):
    compare_models(records, depth=DEPTH, metrics=['iou', 'iou'])
  with pytest.raises(ValueError, match='at least 2 models'):
    compare_models({'vgg11': records['vgg11']}, depth=DEPTH, metrics=['accuracy'])
  with pytest.raises(ValueError, match='lack columns'):
    compare_models(dict(records, vgg11=records['vgg11'].drop(columns='prob')), depth=DEPTH,
                   metrics=['accuracy'])
  nan_metric = records['vgg16'].copy()
  nan_metric['ehr_auc'] = np.nan
  with pytest.raises(ValueError, match="'vgg16' has .* NaN"):
    compare_models(dict(records, vgg16=nan_metric), depth=DEPTH, metrics=['ehr_auc'])
