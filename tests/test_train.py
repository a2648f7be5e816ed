"""Training: the sharded step on 8 host devices equals 1 device; losses; checkpoints."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from cam_jax import models, presets
from cam_jax.core import mesh as mesh_lib
from cam_jax.metrics import classification
from cam_jax.models import checkpoint
from cam_jax.train import loop, optim, step as step_lib


def _batch(n=16, size=32, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.normal(size=(n, size, size, 1)).astype(np.float32),
          'label': (np.arange(n) % 3 == 0).astype(np.int32)}


@pytest.mark.slow
@pytest.mark.parametrize('name,param_sharding', [('resnet_tiny', 'replicate'),
                                                  ('vit_tiny', 'replicate'),
                                                  ('resnet_tiny', 'fsdp'), ('vit_tiny', 'fsdp')])
def test_sharded_step_on_8_devices_equals_1_device(name, param_sharding):
  assert jax.device_count() == 8, 'conftest sets 8 host CPU devices'
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = mesh_lib.make_mesh(devices, fsdp=4 if len(devices) == 8 else 1)  # (2, 4)
    model = models.create(name, image_size=32, seed=3)
    # SGD: Adam's first steps move every weight by about +-lr whatever the gradient's size, so
    # float rounding in a near-zero gradient would decide the sign; SGD keeps the comparison about
    # the sharded forward, loss, gradients and batch statistics.
    tx = optax.sgd(0.05, momentum=0.9)
    graphdef, state, shardings = step_lib.init_state(model, tx, mesh, param_sharding,
                                                     min_size=256)
    step = step_lib.make_train_step(graphdef, tx, step_lib.Loss(step_lib.ClassWeights((1.0, 2.0))),
                                    mesh, shardings)
    losses = []
    for s in range(2):
      state, metrics = step(state, mesh_lib.shard_batch(_batch(seed=s), mesh))
      losses.append(float(metrics['loss']))
    if len(devices) == 8:
      kernels = [x for p, x in jax.tree_util.tree_leaves_with_path(state.params)
                 if 'kernel' in jax.tree_util.keystr(p)]
      split = [not k.sharding.is_fully_replicated for k in kernels]
      splittable = [k.size >= 256 and any(d % 4 == 0 for d in k.shape) for k in kernels]
      assert split == (splittable if param_sharding == 'fsdp' else [False] * len(kernels))
      assert any(split) == (param_sharding == 'fsdp')
    results.append((losses, jax.device_get(state.params), jax.device_get(state.rest)))
  (l1, p1, r1), (l8, p8, r8) = results
  np.testing.assert_allclose(l1, l8, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(r1), jax.tree.leaves(r8)):
    if np.issubdtype(np.asarray(a).dtype, np.floating):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _mean_loss(loss, logits, labels):
  total, weight = loss(jnp.asarray(logits), jnp.asarray(labels))
  return float(total / weight)


def test_weighted_and_focal_losses_match_hand_computation():
  logits, labels = [[2.0], [-1.0], [0.5]], [1, 0, 0]
  w = step_lib.ClassWeights((1.0, 3.0))
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  p_true = np.array([sigmoid(2.0), 1 - sigmoid(-1.0), 1 - sigmoid(0.5)])
  weights = np.array([3.0, 1.0, 1.0])
  ce = -np.log(p_true)
  np.testing.assert_allclose(_mean_loss(step_lib.Loss(w), logits, labels),
                             (weights * ce).sum() / 5, rtol=1e-6)
  focal = step_lib.Loss(w, 'focal', gamma=2.0)
  np.testing.assert_allclose(_mean_loss(focal, logits, labels),
                             (weights * (1 - p_true) ** 2 * ce).sum() / 5, rtol=1e-5)
  softmax, lab = [[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], [2, 1]
  w3 = step_lib.ClassWeights((1.0, 2.0, 4.0))
  ce3 = [-np.log(np.exp(-1) / np.exp([1, 0, -1]).sum()),
         -np.log(np.exp(2) / np.exp([0, 2, 0]).sum())]
  np.testing.assert_allclose(_mean_loss(step_lib.Loss(w3), softmax, lab),
                             (4 * ce3[0] + 2 * ce3[1]) / 6, rtol=1e-6)
  with pytest.raises(ValueError, match="unknown loss 'hinge'"):
    step_lib.Loss(w, 'hinge')


def test_youden_threshold_by_hand():
  # Thresholds 0.9, 0.8, 0.4, 0.3, 0.1: J = sens + spec - 1 is 0.5, 0.5, 1.0, 0.5, 0: t = 0.4.
  labels, probs = [1, 0, 1, 0, 0], [0.9, 0.3, 0.4, 0.1, 0.8]
  assert classification.youden_threshold(labels, probs) == pytest.approx(0.4)
  assert classification.youden_threshold([1, 1], [0.2, 0.3]) == 0.5


def test_weight_decay_skips_biases_norms_and_vit_tokens():
  """One AdamW step with zero gradients moves only decayed leaves, by lr * wd * w."""
  model = models.create('vit_tiny', image_size=32)
  params = nnx.state(model, nnx.Param)
  cfg = presets.train_config('tiny')
  cfg.warmup_epochs, cfg.weight_decay = 0.0, 0.1
  tx = optim.optimizer(cfg, total_steps=10)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  lr = cfg.learning_rate
  for path, p in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    u = jax.tree_util.tree_leaves(updates)[
        [jax.tree_util.keystr(q) for q, _ in jax.tree_util.tree_leaves_with_path(updates)
         ].index(name)]
    decayed = p.ndim >= 2 and 'pos_embed' not in name and 'cls_token' not in name
    np.testing.assert_allclose(u, -lr * 0.1 * p if decayed else 0 * p, rtol=1e-5, atol=1e-9)
  cfg.optimizer = 'lamb'
  with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
    optim.optimizer(cfg, 10)


def _one_step(name, *, accum_steps=1, ema_decay=0.0, dtype=None, steps=1, seed=0, **overrides):
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  model = models.create(name, image_size=32, seed=3, dtype=dtype, **overrides)
  tx = optax.sgd(0.05, momentum=0.9)
  graphdef, state, shardings = step_lib.init_state(model, tx, mesh, ema=ema_decay > 0)
  step = step_lib.make_train_step(graphdef, tx, step_lib.Loss(step_lib.ClassWeights((1.0, 2.0))),
                                  mesh, shardings, accum_steps=accum_steps, ema_decay=ema_decay)
  trail, losses = [jax.device_get(state.params)], []
  for s in range(steps):
    state, metrics = step(state, mesh_lib.shard_batch(_batch(seed=seed + s), mesh))
    trail.append(jax.device_get(state.params))
    losses.append(float(metrics['loss']))
  return state, trail, losses


def test_gradient_accumulation_equals_the_whole_batch():
  """vit_tiny with a linear patch stem has no batch statistics, so 4 micro-batches give the
  whole batch's gradient."""
  whole, _, l1 = _one_step('vit_tiny', conv_stem=())
  micro, _, l4 = _one_step('vit_tiny', accum_steps=4, conv_stem=())
  np.testing.assert_allclose(l1, l4, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(micro.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ema_follows_its_recurrence():
  state, trail, _ = _one_step('vgg_tiny', ema_decay=0.5, steps=3)
  expected = trail[0]
  for params in trail[1:]:
    expected = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, expected, params)
  for a, b in zip(jax.tree.leaves(state.ema), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bfloat16_compute_keeps_float32_weights_and_tracks_the_float32_loss():
  """4 steps in bfloat16 from the same weights: parameters stay float32 and the loss stays
  within 0.02 (absolute) of float32's, about bfloat16's 8-bit mantissa over a few layers."""
  f32, _, l32 = _one_step('resnet_tiny', steps=4)
  bf16, _, l16 = _one_step('resnet_tiny', steps=4, dtype=jnp.bfloat16)
  assert {x.dtype for x in jax.tree.leaves(bf16.params)} == {jnp.dtype('float32')}
  np.testing.assert_allclose(l16, l32, atol=0.02)
  assert l16 != l32  # it did compute in bfloat16


def test_balanced_class_weights_and_missing_class():
  w = step_lib.ClassWeights.from_labels(np.array([0, 0, 0, 1]), num_classes=1)
  np.testing.assert_allclose(w.weights, (4 / 6, 4 / 2))
  with pytest.raises(ValueError, match='every class'):
    step_lib.ClassWeights.from_labels(np.zeros(5, int), num_classes=1)


@pytest.mark.slow
def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
  recipe = checkpoint.recipe('vgg_tiny', 1, 32, seed=5, normalisation=(0.45, 0.2))
  model = models.create(**recipe)
  # Move batch statistics off their initial values so the test sees them restored.
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  rest = jax.tree.map(lambda x: x + 0.25 if jnp.issubdtype(x.dtype, jnp.floating) else x, rest)
  model = nnx.merge(graphdef, params, rest)
  checkpoint.save(str(tmp_path / 'ckpt'), recipe, model)
  loaded, got_recipe = checkpoint.load(str(tmp_path / 'ckpt'))
  assert got_recipe == recipe
  x = jnp.asarray(_batch(4)['image'])
  np.testing.assert_array_equal(loaded(x), model(x))
  with pytest.raises(FileNotFoundError, match='no cam_jax checkpoint'):
    checkpoint.load(str(tmp_path / 'missing'))


@pytest.mark.slow
def test_training_lowers_the_loss_and_exports_the_best_epoch(tiny_splits, tmp_path):
  """The loop runs its epochs, logs one history row each, the training loss falls, and
  checkpoint/ holds the epoch with the best validation ROC-AUC, checkpoint_last/ the last."""
  cfg = presets.train_config('tiny')
  cfg.epochs = 6
  result = loop.train(checkpoint.recipe('resnet_tiny', 1, 32, 0), cfg, tiny_splits['train'],
                      tiny_splits['validation'], workdir=str(tmp_path),
                      mesh=mesh_lib.make_mesh(jax.devices()[:1]), log=lambda m: None)
  assert [r['epoch'] for r in result.history] == list(range(1, 7))
  assert result.history[-1]['loss'] < result.history[0]['loss']
  aucs = [r['roc_auc'] for r in result.history]
  assert result.best_epoch == max(range(1, 7), key=lambda e: (aucs[e - 1], e))
  about = checkpoint.provenance(str(tmp_path / 'checkpoint'))
  assert about['epoch'] == result.best_epoch and about['validation']['roc_auc'] == max(aucs)
  assert checkpoint.provenance(str(tmp_path / 'checkpoint_last'))['epoch'] == 6
  x = jnp.asarray(_batch(4)['image'])
  np.testing.assert_array_equal(checkpoint.load(str(tmp_path / 'checkpoint'))[0](x),
                                result.model(x))
  rows = [json.loads(line) for line in open(tmp_path / 'train_log.jsonl')]
  assert [r['step'] for r in rows if r['kind'] == 'step'] == list(range(1, 25))
  assert all(0 <= r['input_wait_fraction'] <= 1 for r in rows if r['kind'] == 'window')
  assert os.listdir(tmp_path / 'tensorboard')


@pytest.mark.slow
def test_a_diverging_run_stops_naming_the_step_and_images_and_keeps_good_checkpoints(
    tiny_splits, tmp_path):
  cfg = presets.train_config('tiny')
  cfg.epochs, cfg.learning_rate, cfg.warmup_epochs = 3, 1e30, 0.0
  cfg.checkpoint_every_steps = 1
  with pytest.raises(loop.NonFiniteLoss, match=r'at step \d+, batch of images phantom'):
    loop.train(checkpoint.recipe('vgg_tiny', 1, 32, 0), cfg, tiny_splits['train'],
               tiny_splits['validation'], workdir=str(tmp_path),
               mesh=mesh_lib.make_mesh(jax.devices()[:1]), log=lambda m: None)
  for step in os.listdir(tmp_path / 'train_state'):
    if step.isdigit():
      tree = ocp.StandardCheckpointer().restore(tmp_path / 'train_state' / step / 'state')
      assert all(np.isfinite(x).all() for x in jax.tree.leaves(tree['params']))


def test_batch_size_must_divide_the_mesh():
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    mesh_lib.check_batch_size(12, mesh_lib.make_mesh())


def test_mesh_axes_and_fsdp_size_are_checked():
  assert dict(mesh_lib.make_mesh().shape) == {'data': 8, 'fsdp': 1}
  assert dict(mesh_lib.make_mesh(fsdp=2).shape) == {'data': 4, 'fsdp': 2}
  assert dict(mesh_lib.make_mesh(fsdp=-1).shape) == {'data': 1, 'fsdp': 8}
  with pytest.raises(ValueError, match=r'fsdp axis \(3 devices\) must divide the 8 devices'):
    mesh_lib.make_mesh(fsdp=3)
  cfg = presets.train_config('tiny')
  cfg.param_sharding = 'fsdp'
  with pytest.raises(ValueError, match="fsdp axis, which has 1 of the 8 devices"):
    loop._check_recipe(cfg, mesh_lib.make_mesh())
  loop._check_recipe(cfg, mesh_lib.make_mesh(fsdp=-1))


def test_fsdp_rules_shard_the_largest_divisible_axis():
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  from cam_jax.train import sharding  # pylint: disable=g-import-not-at-top
  rules = sharding.STRATEGIES['fsdp']
  spec = lambda path, shape: sharding.partition_spec(path, shape, rules, 8, min_size=64)
  assert spec('/params/layer1/0/conv1/kernel', (3, 3, 64, 128)) == P(None, None, None, 'fsdp')
  assert spec('/opt_state/0/mu/fc/kernel/value', (512, 1000)) == P(None, 'fsdp')
  assert spec('/params/fc/kernel/value', (512, 1001)) == P('fsdp', None)
  assert spec('/params/fc/kernel', (3, 3, 5, 7)) == P()        # no axis divisible by 8
  assert spec('/params/fc/bias', (1024,)) == P()               # rule: replicate
  assert spec('/params/fc/kernel', (4, 8)) == P()              # below min_size
  with pytest.raises(ValueError, match="unknown parameter sharding 'zero'; choose one of"):
    sharding.tree_shardings({}, mesh_lib.make_mesh(), 'zero')


@pytest.mark.slow
@pytest.mark.parametrize('name', ['resnet152', 'vit_l16'])
def test_fsdp_rules_shard_almost_all_of_a_large_model(name):
  """On 8 devices the FSDP rules split >= 95% of ResNet-152's and ViT-L's parameter bytes."""
  from cam_jax.train import sharding  # pylint: disable=g-import-not-at-top
  abstract = nnx.eval_shape(lambda: models.create(name, num_classes=1000, in_channels=3))
  params = nnx.state(abstract, nnx.Param)
  shardings = sharding.tree_shardings(params, mesh_lib.make_mesh(fsdp=-1), 'fsdp')
  sizes = [int(np.prod(p.shape)) for p in jax.tree.leaves(params)]
  split = [not s.is_fully_replicated for s in jax.tree.leaves(shardings)]
  assert sum(n for n, s in zip(sizes, split) if s) / sum(sizes) >= 0.95
