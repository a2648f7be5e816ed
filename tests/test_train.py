"""Training: the sharded step on 8 host devices equals 1 device; losses; checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from cam_jax import models, presets
from cam_jax.core import mesh as mesh_lib
from cam_jax.models import checkpoint
from cam_jax.train import loop, step as step_lib


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
    mesh = mesh_lib.make_mesh(devices)
    model = models.create(name, image_size=32, seed=3)
    # SGD: Adam's first steps move every weight by about +-lr whatever the gradient's size, so
    # float rounding in a near-zero gradient would decide the sign; SGD keeps the comparison about
    # the sharded forward, loss, gradients and batch statistics.
    tx = optax.sgd(0.05, momentum=0.9)
    graphdef, state, shardings = step_lib.init_state(model, tx, mesh, param_sharding,
                                                     min_size=256)
    step = step_lib.make_train_step(graphdef, tx, step_lib.ClassWeights((1.0, 2.0)), mesh,
                                    shardings)
    losses = []
    for s in range(2):
      state, metrics = step(state, mesh_lib.shard_batch(_batch(seed=s), mesh))
      losses.append(float(metrics['loss']))
    if len(devices) == 8:
      kernels = [x for p, x in jax.tree_util.tree_leaves_with_path(state.params)
                 if 'kernel' in jax.tree_util.keystr(p)]
      split = [not k.sharding.is_fully_replicated for k in kernels]
      splittable = [k.size >= 256 and any(d % 8 == 0 for d in k.shape) for k in kernels]
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


def test_weighted_loss_matches_hand_computation():
  logits = jnp.array([[2.0], [-1.0], [0.5]])
  labels = jnp.array([1, 0, 0])
  w = step_lib.ClassWeights((1.0, 3.0))
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  bce = lambda z, y: -(y * np.log(sigmoid(z)) + (1 - y) * np.log(1 - sigmoid(z)))
  expected = (3 * bce(2.0, 1) + bce(-1.0, 0) + bce(0.5, 0)) / (3 + 1 + 1)
  np.testing.assert_allclose(step_lib.weighted_loss(logits, labels, w), expected, rtol=1e-6)
  softmax = jnp.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
  lab = jnp.array([2, 1])
  w3 = step_lib.ClassWeights((1.0, 2.0, 4.0))
  ce = [-np.log(np.exp(-1) / np.exp([1, 0, -1]).sum()),
        -np.log(np.exp(2) / np.exp([0, 2, 0]).sum())]
  np.testing.assert_allclose(step_lib.weighted_loss(softmax, lab, w3),
                             (4 * ce[0] + 2 * ce[1]) / 6, rtol=1e-6)


def test_balanced_class_weights_and_missing_class():
  w = step_lib.ClassWeights.from_labels(np.array([0, 0, 0, 1]), num_classes=1)
  np.testing.assert_allclose(w.weights, (4 / 6, 4 / 2))
  with pytest.raises(ValueError, match='every class'):
    step_lib.ClassWeights.from_labels(np.zeros(5, int), num_classes=1)


@pytest.mark.slow
def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
  recipe = checkpoint.recipe('vgg_tiny', 1, 32, seed=5)
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
def test_training_lowers_the_loss_on_the_tiny_phantom(tiny_splits):
  """The loop runs its epochs, logs one history row each, and the training loss falls."""
  cfg = presets.train_config('tiny')
  cfg.epochs = 6
  result = loop.train(checkpoint.recipe('resnet_tiny', 1, 32, 0), cfg, tiny_splits['train'],
                      tiny_splits['validation'], mesh=mesh_lib.make_mesh(jax.devices()[:1]),
                      log=lambda m: None)
  assert len(result.history) == 6
  assert result.history[-1]['loss'] < result.history[0]['loss']


def test_batch_size_must_divide_the_mesh():
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    mesh_lib.check_batch_size(12, mesh_lib.make_mesh())


def test_fsdp_rules_shard_the_largest_divisible_axis():
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  from cam_jax.train import sharding  # pylint: disable=g-import-not-at-top
  rules = sharding.STRATEGIES['fsdp']
  spec = lambda path, shape: sharding.partition_spec(path, shape, rules, 8, min_size=64)
  assert spec('/params/layer1/0/conv1/kernel', (3, 3, 64, 128)) == P(None, None, None, 'data')
  assert spec('/opt_state/0/mu/fc/kernel/value', (512, 1000)) == P(None, 'data')
  assert spec('/params/fc/kernel/value', (512, 1001)) == P('data', None)
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
  shardings = sharding.tree_shardings(params, mesh_lib.make_mesh(), 'fsdp')
  sizes = [int(np.prod(p.shape)) for p in jax.tree.leaves(params)]
  split = [not s.is_fully_replicated for s in jax.tree.leaves(shardings)]
  assert sum(n for n, s in zip(sizes, split) if s) / sum(sizes) >= 0.95
