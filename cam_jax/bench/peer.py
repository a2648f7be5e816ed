"""Suite ``peer`` (``configs/bench_peer.py``): the whole scoring job as users write it today,
timed beside ``cam_jax.score`` in the same run on the same weights, images and masks, and the
two checked against each other in that run.

Per model: the architecture built in torch (``testing.torch_reference``, initialised as
torchvision / timm initialise it: ``init_as_source``) with one logit and one input channel, and
the same weights loaded into cam_jax (``models.weights``). The phantom's test split is streamed
both ways, every image explained for the sign of the logit that the model predicts on average
over the first batch (pytorch-grad-cam's ``BinaryClassifierOutputTarget``, cam_jax's ``target``
+1 or -1): an untrained head's sign is arbitrary, and for the sign it does not predict nearly
every Grad-CAM map is zero, which Quantus refuses.

* the peer (the reference of the ratio), per batch: the records read and normalised in NumPy
  (the model's normalisation), pytorch-grad-cam's ``GradCAM``, Quantus 0.6's ``PointingGame``,
  ``RelevanceMassAccuracy``, ``RelevanceRankAccuracy``, ``TopKIntersection`` (k:
  ``localisation.default_top_k``) and ``AUC`` on the batch's maps and masks, and EHR-AUC per
  image in NumPy (``host_metrics.ehr_auc``): ``peer_metrics``;
* cam_jax: ``driver.record_stream``, the compiled-once stream ``cam_jax.score`` runs, with its
  localisation metrics (these six and the rest of ``localisation_metrics``: IoU/Dice grids,
  Otsu, PR-AUC).

The agreement (``model_cases``' ``agreement``), from the last timed call of each:

* heat maps: pytorch-grad-cam's against cam_jax's on the same inputs (``cams.heat_function``,
  the CAM and postprocess that the scoring step fuses): max abs difference <= ``MAP_TOLERANCE``,
  except on images at a ReLU tie. Grad-CAM's weights are the gradient of the logit, which jumps
  where a ReLU behind the CAM layer has an input at 0; within float32 rounding of it
  (``RELU_TIE``), torch and XLA can take different branches and both maps are right. VGG-16's
  classifier at 224 px put one of 32 images there (a hidden unit's input 7e-7 of its mean, a
  map difference of 5e-3);
* each metric on the same maps: the peer's numbers against cam_jax's metric kernel
  (``localisation.localisation_metrics``, what the scoring step runs) on pytorch-grad-cam's
  maps, over the images with a lesion. Two differences are documented (tests/
  test_quantus_parity.py) and allowed for. Empty masks are skipped: there Quantus returns NaN,
  and PointingGame a hit, while cam_jax returns 0 and its records hold no number. And ties at a
  rank cut: the pointing game (the top 1 pixel), top-k and relevance rank (the top |mask|
  pixels) are shares of the k highest pixels, which Quantus takes in one order of the tied
  pixels (``np.argsort``'s; PointingGame counts a hit if any tied maximum is in the mask) and
  cam_jax as the expected share over every order. There the peer's value must lie between the
  least and the greatest share over the orders and cam_jax's equal the expected one
  (``tie_shares``: one value where no tie straddles the cut); elsewhere, and for the other
  metrics, the two agree within ``ROUNDING``;
* end to end: max |peer - cam_jax.score's records|, reported, not checked. It adds the maps'
  rounding (within ``MAP_TOLERANCE``), which can reorder two pixels that close at a rank cut or
  move one across an EHR threshold.
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cam_jax import cams, data, models
from cam_jax.bench import harness as bench
from cam_jax.core import mesh as mesh_lib
from cam_jax.core.errors import BadInput
from cam_jax.core.text import split_list
from cam_jax.metrics import localisation
from cam_jax.scoring import driver
from cam_jax.testing import host_metrics

# cam_jax's records column -> the Quantus 0.6 class that computes it.
QUANTUS = {'pointing_game': 'PointingGame', 'relevance_mass': 'RelevanceMassAccuracy',
           'relevance_rank': 'RelevanceRankAccuracy', 'top_k': 'TopKIntersection',
           'pixel_roc_auc': 'AUC'}
METRICS = (*QUANTUS, 'ehr_auc')
RANKED = ('pointing_game', 'top_k', 'relevance_rank')  # shares of the k highest pixels
# Quantus scores the maps as given (they are pytorch-grad-cam's: in [0, 1]), as cam_jax does.
QUANTUS_OPTIONS = dict(normalise=False, abs=False, disable_warnings=True)
# Heat maps in [0, 1]: the parity tests' tolerance (tests/test_cams_parity.py), float32 rounding
# through 12 to 50 layers.
MAP_TOLERANCE = 1e-4
# A ReLU behind the CAM layer whose input comes within this share of its mean |input| of 0 (ten
# times the two sides' relative difference of VGG-16's logits here, about 1e-6) may pass the
# gradient on one side and block it on the other (torch_reference.relu_margins).
RELU_TIE = 1e-5
# One map, two implementations: float32 sums over H * W pixels (relevance mass, EHR's ratios),
# sklearn's float64 ROC curve against cam_jax's rank counts (tests/test_localisation.py's 1e-5).
ROUNDING = 1e-5
PEER_CASE = 'peer: pytorch-grad-cam + Quantus + NumPy EHR-AUC'
OURS_CASE = 'cam_jax.score'


def tie_shares(heat: np.ndarray, mask: np.ndarray, k: int) -> tuple[float, float, float]:
  """(least, expected, greatest) share of the ``k`` highest pixels of ``heat`` inside ``mask``
  over the orders of the pixels tied at the k-th highest value (the expected one: each order
  equally likely, cam_jax's definition); one value unless pixels inside and outside the mask
  tie across the cut."""
  h, m = heat.ravel(), mask.ravel().astype(bool)
  cut = np.partition(h, h.size - k)[h.size - k]
  above, tied = h > cut, h == cut
  inside, places = int((above & m).sum()), k - int(above.sum())
  tied_in, tied_all = int((tied & m).sum()), int(tied.sum())
  return ((inside + max(0, places - (tied_all - tied_in))) / k,
          (inside + places * tied_in / tied_all) / k, (inside + min(tied_in, places)) / k)


def peer_metrics(k: int):
  """``score(images (B, C, H, W), heat (B, H, W), masks (B, H, W)) -> {metric: (B,)}``: Quantus
  0.6's metrics on a batch (``QUANTUS``, top-k with ``k``) and EHR-AUC per image in NumPy, as a
  user calls them: Quantus with ``model=None`` and precomputed maps and masks."""
  import quantus  # pylint: disable=g-import-not-at-top
  metrics = {key: getattr(quantus, name)(**({'k': k} if key == 'top_k' else {}),
                                         **QUANTUS_OPTIONS) for key, name in QUANTUS.items()}

  def score(images, heat, masks):
    a, s = heat[:, None], masks[:, None].astype(np.float32)
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # Quantus warns of each empty mask it scores NaN
      out = {key: np.asarray(metric(model=None, x_batch=images, y_batch=np.zeros(len(a), int),
                                    a_batch=a, s_batch=s), np.float64)
             for key, metric in metrics.items()}
    out['ehr_auc'] = np.array([host_metrics.ehr_auc(h, m) for h, m in zip(heat, masks)])
    return out

  return score


def metric_rows(peer: dict, same: dict, heat: np.ndarray, masks: np.ndarray) -> list[dict]:
  """Per metric of ``METRICS``, over the images with a lesion: the peer's values ``peer`` against
  cam_jax's ``same`` on the same ``heat`` maps (see the module docstring): images, those at a
  tie, max abs difference, tolerance and whether every image passes."""
  lesion = masks.reshape(len(masks), -1).any(axis=1)
  if not lesion.any():
    raise BadInput(f'none of the {len(masks)} images has a lesion: nothing to compare; raise '
                   'data.num_test or data.positive_rate')
  heat, masks = heat[lesion], masks[lesion]
  cuts = {'pointing_game': [1] * len(masks),
          'top_k': [localisation.default_top_k(heat[0].size)] * len(masks),
          'relevance_rank': [int(m.sum()) for m in masks]}
  rows = []
  for key in METRICS:
    theirs, ours = np.asarray(peer[key])[lesion], np.asarray(same[key], np.float64)[lesion]
    if key in RANKED:
      lo, mid, hi = np.array([tie_shares(h, m, k) for h, m, k in zip(heat, masks, cuts[key])]).T
      ok = (lo - ROUNDING <= theirs) & (theirs <= hi + ROUNDING) & (np.abs(ours - mid) <= ROUNDING)
      tied = int((hi > lo).sum())
    else:
      ok, tied = np.abs(theirs - ours) <= ROUNDING, 0
    rows.append({'quantity': key, 'images': int(lesion.sum()), 'at_a_tie': tied,
                 'max_abs_diff': float(np.abs(theirs - ours).max()), 'tolerance': ROUNDING,
                 'pass': bool(ok.all())})
  return rows


def _read(records: list[dict], normalisation) -> tuple[np.ndarray, np.ndarray]:
  """(model inputs (B, C, H, W) float32, masks (B, H, W) bool) of a list of records."""
  images = normalisation.normalise(np.stack([r['image'] for r in records]))
  return images.transpose(0, 3, 1, 2), np.stack([r['mask'] for r in records]).astype(bool)


def _batches(source, batch_size: int):
  for start in range(0, len(source), batch_size):
    yield [source[i] for i in range(start, min(start + batch_size, len(source)))]


def model_cases(name: str, config, source, mesh):
  """(the peer's and cam_jax's cases for ``name``, ``agreement() -> table`` of their last
  timed calls)."""
  import torch  # pylint: disable=g-import-not-at-top

  from cam_jax.models import weights  # pylint: disable=g-import-not-at-top
  from cam_jax.testing import pytorch_grad_cam_import, torch_reference  # pylint: disable=g-import-not-at-top
  pgc = pytorch_grad_cam_import.import_pytorch_grad_cam()
  from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget  # pylint: disable=g-import-not-at-top
  s, b = config.image_size, config.batch_size
  torch.manual_seed(0)
  ref = torch_reference.init_as_source(
      torch_reference.build(name, num_classes=1, image_size=s, in_channels=1)).eval()
  model = weights.load_state_dict(models.create(name, image_size=s), ref.state_dict(),
                                  strict_head=True).model
  layer = models.default_cam_layer(model)
  cam = pgc.GradCAM(model=ref, target_layers=[torch_reference.submodule(ref, layer)],
                    reshape_transform=(torch_reference.token_reshape(model.grid)
                                       if hasattr(model, 'grid') else None))
  with torch.no_grad():  # the sign explained: see the module docstring
    logits = ref(torch.from_numpy(_read(next(_batches(source, b)), model.normalisation)[0]))
  target = 1 if float(logits.mean()) >= 0 else -1
  score_batch = peer_metrics(localisation.default_top_k(s * s))
  stream = driver.record_stream(model, target=target, metrics=(driver.LOCALISATION,),
                                batch_size=b, mesh=mesh)
  last = {}

  def peer():
    parts, start, in_metrics = [], time.perf_counter(), 0.0
    for records in _batches(source, b):
      images, masks = _read(records, model.normalisation)
      heat = cam(input_tensor=torch.from_numpy(images),
                 targets=[BinaryClassifierOutputTarget(int(target > 0)) for _ in records])
      before = time.perf_counter()
      scores = score_batch(images, heat, masks)
      in_metrics += time.perf_counter() - before
      parts.append({'id': np.asarray([r['id'] for r in records]).astype(str), 'heat': heat,
                    'mask': masks, **scores})
    last['peer'] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    last['metrics_share'] = in_metrics / (time.perf_counter() - start)
    return last['peer']['ehr_auc']

  def ours():
    last['ours'] = stream(source)
    return last['ours']['ehr_auc'].to_numpy()

  def agreement() -> pd.DataFrame:
    theirs = last['peer']
    heat_fn, state, _ = cams.heat_function(model, 'gradcam', layer)
    kernel = jax.jit(jax.vmap(localisation.localisation_metrics))
    maps, margins, same = [], [], []
    for i, records in enumerate(_batches(source, b)):
      images = _read(records, model.normalisation)[0]
      margins.append(torch_reference.relu_margins(ref, layer, torch.from_numpy(images)))
      targets = jnp.full(len(records), target, jnp.int32)
      maps.append(np.asarray(heat_fn(state, jnp.asarray(images.transpose(0, 2, 3, 1)),
                                     targets)[0]))
      rows = slice(i * b, i * b + len(records))
      same.append(jax.device_get(kernel(theirs['heat'][rows], theirs['mask'][rows])))
    same = {key: np.concatenate([x[key] for x in same]) for key in METRICS}
    map_error = np.abs(np.concatenate(maps) - theirs['heat']).max(axis=(1, 2))
    tied = np.concatenate(margins) < RELU_TIE
    records = last['ours'].set_index('id').loc[theirs['id']]
    lesion = theirs['mask'].reshape(len(theirs['mask']), -1).any(axis=1)
    table = pd.DataFrame(
        [{'quantity': 'heat map', 'images': len(lesion), 'at_a_tie': int(tied.sum()),
          'max_abs_diff': float(map_error.max()), 'tolerance': MAP_TOLERANCE,
          'pass': bool(np.all(map_error[~tied] <= MAP_TOLERANCE))}]
        + metric_rows(theirs, same, theirs['heat'], theirs['mask']))
    table['max_abs_diff_score'] = [np.nan] + [
        float(np.abs(theirs[key][lesion] - records[key].to_numpy()[lesion]).max())
        for key in METRICS]
    table.insert(0, 'model', name)
    table['peer_metrics_share'] = last['metrics_share']  # of its last call's time
    return table

  group, n = f'{name} {s}px data set', len(source)
  return [bench.Case(PEER_CASE, peer, n, group, reference=True),
          bench.Case(OURS_CASE, ours, n, group)], agreement


def suite(config):
  """(every model's cases, ``agree() -> table``: the agreement of their last timed calls)."""
  mesh = mesh_lib.make_mesh()
  source = data.open_split(config.data, 'test', config.data_dir)
  built = [model_cases(name, config, source, mesh) for name in split_list(config.models)]
  return ([c for cases, _ in built for c in cases],
          lambda: pd.concat([agreement() for _, agreement in built], ignore_index=True))


def markdown(table: pd.DataFrame, agreement: pd.DataFrame) -> str:
  """Per model, the two ways' images/s, their ratio, the share of the peer's last call spent in
  its metrics and the agreement; then the agreement rows."""
  lines = ['| model | peer images/s | cam_jax.score images/s | cam_jax / peer | peer time in '
           'Quantus + NumPy | agreement |', '|---|---|---|---|---|---|']
  for model, rows in agreement.groupby('model', sort=False):
    group = table[table['group'].str.startswith(f'{model} ')]
    peer, ours = (group[group['case'] == case].iloc[0] for case in (PEER_CASE, OURS_CASE))
    lines.append(f"| {model} | {peer['items_per_s']:.2f} | {ours['items_per_s']:.2f} | "
                 f"{ours['ratio']:.2f}x | {100 * rows['peer_metrics_share'].iloc[0]:.0f}% | "
                 f"{'pass' if rows['pass'].all() else 'FAIL'} |")
  lines += ['', '| model | quantity | images | at a tie | max abs diff, same maps | tolerance | '
            'max abs diff, end to end | pass |', '|---|---|---|---|---|---|---|---|']
  for _, r in agreement.iterrows():
    tie = '' if np.isnan(r['at_a_tie']) else f"{int(r['at_a_tie'])}"
    e2e = '' if np.isnan(r['max_abs_diff_score']) else f"{r['max_abs_diff_score']:.1e}"
    lines.append(f"| {r['model']} | {r['quantity']} | {r['images']} | {tie} | "
                 f"{r['max_abs_diff']:.1e} | {r['tolerance']:.0e} | {e2e} | "
                 f"{'pass' if r['pass'] else 'FAIL'} |")
  return '\n'.join(lines)
