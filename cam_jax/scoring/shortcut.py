"""A known-truth check of shortcut learning: does a model's heat lie more on a confounder (a
chest-drain tube) than on the lesion?

Classifiers of chest radiographs learn confounders that travel with the label: the hospital and
the scanner (Zech et al., "Variable generalization performance of a deep learning model to detect
pneumonia in chest radiographs", PLoS Med 2018), and for pneumothorax the chest drain of cases
already treated (Oakden-Rayner et al., "Hidden stratification causes clinically meaningful
failures in machine learning for medical imaging", ACM CHIL 2020); Geirhos et al. ("Shortcut
learning in deep neural networks", Nat. Mach. Intell. 2020) name the general failure. On real
images nobody knows which pixels a model used; on the phantom the tube's pixels are known
(``data.tube_masks``), so a heat map can be checked against them.

Per image, ``heat_densities`` compares the mean heat (the postprocessed CAM in [0, 1],
``cams.heat_function``) over the tube's pixels outside the lesion with the mean heat over the
lesion's pixels: densities, so that a long tube does not outweigh a small lesion by its size.
``share_summary`` gives the share of positive images with a tube whose heat lies more on the
tube (a Wilson interval); ``compare_shares`` compares two models' shares, e.g. one trained with
tubes that go with the label against a control trained without them.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats as sp_stats

from cam_jax import cams, data
from cam_jax.analysis import statistics
from cam_jax.core import flags as flags_lib, mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.metrics import localisation
from cam_jax.models import checkpoint
from cam_jax.scoring import driver

COLUMNS = ['id', 'label', 'has_mask', 'has_tube', 'tube_heat', 'lesion_heat', 'tube_over_lesion',
           'flags']


def heat_densities(heat, tube_mask, lesion_mask):
  """``(tube_heat, lesion_heat)``: the mean of ``heat`` over the pixels of ``tube_mask`` outside
  ``lesion_mask``, and over the pixels of ``lesion_mask``; reduced over the last two axes (one
  map (H, W) or a batch (B, H, W)); NaN where that set of pixels is empty."""
  heat = jnp.asarray(heat, jnp.float32)
  lesion = jnp.asarray(lesion_mask, bool)
  tube = jnp.asarray(tube_mask, bool) & ~lesion

  def mean(region):
    count = jnp.sum(region, axis=(-2, -1))
    total = jnp.sum(jnp.where(region, heat, 0.0), axis=(-2, -1))
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)

  return mean(tube), mean(lesion)


def _with_tubes(batches, data_config):
  """Eval ``batches`` with ``tube``: the tube masks of their records (False on padding)."""
  for batch in batches:
    valid = np.asarray(batch['valid'], bool)
    tube = np.zeros(np.shape(batch['mask']), bool)
    tube[valid] = data.tube_masks(data_config, np.asarray(batch['id'])[valid])
    yield {**batch, 'tube': tube}


def _frame(batch: dict, out: dict) -> pd.DataFrame:
  valid = np.asarray(batch['valid'], bool)
  tube_heat = np.asarray(out['tube_heat'], np.float64)
  lesion_heat = np.asarray(out['lesion_heat'], np.float64)
  return pd.DataFrame({
      'id': np.asarray(batch['id']).astype(str), 'label': np.asarray(batch['label']).astype(int),
      'has_mask': np.asarray(batch['mask']).reshape(len(valid), -1).any(axis=1),
      'has_tube': batch['tube'].reshape(len(valid), -1).any(axis=1),
      'tube_heat': tube_heat, 'lesion_heat': lesion_heat,
      'tube_over_lesion': tube_heat > lesion_heat,  # False where either is NaN
      'flags': [flags_lib.flag_names(int(f)) for f in out['flags']]})[valid]


def shortcut_records(model, dataset, data_config, *, method: str = 'gradcam',
                     layer: str | None = None, target: int = 1, batch_size: int = 64, mesh=None,
                     progress: bool = False, **cam_options) -> pd.DataFrame:
  """Heat on the tube against heat on the lesion, one row per image of ``dataset``.

  ``model``: an ``nnx.Module`` or a checkpoint directory. ``dataset``: a random-access source
  of phantom records (``data.open_split(data_config, 'test')``) or an iterable of batches
  shaped like ``cam_jax.data.eval_batches``, normalised with ``model.normalisation``.
  ``data_config``: the phantom data config the records come from; their tubes are redrawn
  from it (``data.tube_masks``). ``target``: the explained sign or class (see
  ``cams.target_score``); ``cam_options`` go to ``cams.heat_function``.

  Columns ``COLUMNS``: ``tube_heat``, ``lesion_heat`` as in ``heat_densities`` (NaN without a
  tube outside the lesion, or without a lesion); ``tube_over_lesion``: ``tube_heat >
  lesion_heat``, False where either is NaN (and on ties); ``flags``: the degenerate maps
  (``core.flags``: constant and non-finite from ``cams.postprocess``, ``no_heat`` where no pixel
  reaches ``localisation.EHR_MIN_HEAT``). A constant map normalises to zeros, so its heats are
  0 and it is never ``tube_over_lesion``; ``share_summary`` leaves flagged maps out.
  """
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  model, _ = checkpoint.model_and_recipe(model)
  data.phantom_spec(data_config)  # fails early on a data set that is not the phantom
  heat_fn, state, _ = cams.heat_function(model, method, layer, **cam_options)

  def step(state, images, lesion, tube, targets):
    heat, flags, _ = heat_fn(state, images, targets)
    tube_heat, lesion_heat = heat_densities(heat, tube, lesion)
    has_heat = jnp.any(heat >= localisation.EHR_MIN_HEAT, axis=(1, 2))
    return {'tube_heat': tube_heat, 'lesion_heat': lesion_heat,
            'flags': flags | jnp.where(has_heat, 0, flags_lib.FLAG_NO_HEAT)}

  step = mesh_lib.jit_on_mesh(step, mesh, replicated_args=1, sharded_args=4)
  state = mesh_lib.replicate(state, mesh)

  def device_fn(i, images, masks, tubes):
    del i
    return step(state, images, masks, tubes, mesh_lib.same_targets(target, images.shape[0], mesh))

  batches = _with_tubes(driver.as_batches(dataset, batch_size, model.normalisation), data_config)
  return driver.stream_frames(batches, device_fn, mesh, progress=progress,
                              desc=f'shortcut {method}', to_frame=_frame,
                              keys=('image', 'mask', 'tube'))


def _scored(records: pd.DataFrame) -> pd.DataFrame:
  """The rows a share counts: a lesion and tube pixels outside it, the map not degenerate."""
  missing = [c for c in COLUMNS if c not in records]
  if missing:
    raise BadInput(f'records lack the column(s) {", ".join(missing)} of shortcut_records')
  both = records['tube_heat'].notna() & records['lesion_heat'].notna()
  return records[both & (records['flags'].fillna('') == '')]


def share_summary(records: pd.DataFrame, confidence: float = 0.95) -> dict:
  """The share of images with a lesion and a tube whose heat lies more on the tube than on the
  lesion (``tube_over_lesion``), with its Wilson interval (``statistics.wilson_interval``).

  Keys: ``n_images`` (images with a lesion and tube pixels outside it), ``n_flagged`` (of them,
  degenerate maps, left out: a constant map says nothing about where the heat lies), ``n`` (the
  rest, the denominator), ``over``, ``share``, ``low``, ``high``.
  """
  scored = _scored(records)
  n_images = int((records['tube_heat'].notna() & records['lesion_heat'].notna()).sum())
  if scored.empty:
    raise BadInput(f'no image with a lesion and a tube and a non-degenerate heat map among '
                   f'{len(records)} records ({n_images} with a lesion and a tube): the test set '
                   'needs tubes in its positives (tube_rate_pos > 0)')
  n, over = len(scored), int(scored['tube_over_lesion'].sum())
  return {'n_images': n_images, 'n_flagged': n_images - n, 'n': n, 'over': over,
          'share': over / n, **dict(zip(('low', 'high'),
                                        statistics.wilson_interval(over, n, confidence)))}


def compare_shares(records_a: pd.DataFrame, records_b: pd.DataFrame,
                   confidence: float = 0.95) -> dict:
  """Model a's ``share_summary`` against model b's.

  Keys: ``share_a``, ``share_b`` with their Wilson intervals ``low_a``, ``high_a``, ``low_b``,
  ``high_b`` and counted images ``n_a``, ``n_b``; ``difference`` (a - b) with ``low``, ``high``
  (Newcombe's interval for independent samples, ``statistics.difference_interval``), ``p_fisher``
  (Fisher's exact test, two-sided, of the 2 x 2 table of over / not over by model), and, on the
  images both models count (``n_paired``, matched by ``id``), ``p_mcnemar``: the exact McNemar
  test (McNemar, Psychometrika 1947), a two-sided binomial test of the discordant pairs; 1 when
  there are none, NaN when no image is shared. Scored on the same images, the paired test is the
  sharper one; Fisher's ignores the pairing.
  """
  a, b = share_summary(records_a, confidence), share_summary(records_b, confidence)
  difference = statistics.difference_interval(a['over'], a['n'], b['over'], b['n'], confidence)
  table = [[a['over'], a['n'] - a['over']], [b['over'], b['n'] - b['over']]]
  paired = pd.merge(_scored(records_a), _scored(records_b), on='id', suffixes=('_a', '_b'))
  only_a = int((paired['tube_over_lesion_a'] & ~paired['tube_over_lesion_b']).sum())
  only_b = int((paired['tube_over_lesion_b'] & ~paired['tube_over_lesion_a']).sum())
  if paired.empty:
    p_mcnemar = float('nan')
  elif only_a + only_b == 0:
    p_mcnemar = 1.0
  else:
    p_mcnemar = float(sp_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
  return {'share_a': a['share'], 'share_b': b['share'], 'low_a': a['low'], 'high_a': a['high'],
          'low_b': b['low'], 'high_b': b['high'], 'n_a': a['n'], 'n_b': b['n'],
          **dict(zip(('difference', 'low', 'high'), difference)),
          'p_fisher': float(sp_stats.fisher_exact(table).pvalue), 'n_paired': len(paired),
          'p_mcnemar': p_mcnemar}
