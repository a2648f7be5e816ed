"""The model registry: names, shapes, parameter counts, CAM layers, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cam_jax import models
from cam_jax.core.errors import BadInput
from cam_jax.models import registry


def _param_count(name, **kw):
  abstract = nnx.eval_shape(lambda: models.create(name, **kw))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


# torchvision's published counts (VGG, ResNet, vit_b_16/b_32/l_16) and timm's
# (vit_tiny/small_patch16_224), 1000 classes, 3 channels, 224 px.
PUBLISHED_COUNTS = {
    'vgg11': 132_863_336, 'vgg11_bn': 132_868_840, 'vgg13': 133_047_848,
    'vgg13_bn': 133_053_736, 'vgg16': 138_357_544, 'vgg16_bn': 138_365_992,
    'vgg19': 143_667_240, 'vgg19_bn': 143_678_248,
    'resnet18': 11_689_512, 'resnet34': 21_797_672, 'resnet50': 25_557_032,
    'resnet101': 44_549_160, 'resnet152': 60_192_808,
    'vit_ti16': 5_717_416, 'vit_s16': 22_050_664, 'vit_b16': 86_567_656,
    'vit_b32': 88_224_232, 'vit_l16': 304_326_632,
}


def _arrays(model):
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                     else x) for x in jax.tree.leaves(nnx.state(model))]


@pytest.mark.parametrize('name', ['vgg_tiny_2', 'resnet_tiny_1', 'vit_tiny_1'])
def test_create_draws_the_weights_an_eager_build_draws(name):
  # create initialises in one compiled program; the builder run op by op is the reference
  for seed in (0, 3):
    compiled = models.create(name, image_size=64, seed=seed)
    eager = registry._BUILDERS[name](rngs=nnx.Rngs(seed), num_classes=1, in_channels=1,
                                     image_size=64, dtype=None)
    got, want = _arrays(compiled), _arrays(eager)
    assert len(got) == len(want)
    for g, w in zip(got, want):
      assert g.dtype == w.dtype
      np.testing.assert_array_equal(g, w)
  seeds = [_arrays(models.create(name, image_size=64, seed=s)) for s in (0, 1)]
  assert any(not np.array_equal(a, b) for a, b in zip(*seeds))


def test_every_standard_model_has_a_published_count():
  assert sorted(PUBLISHED_COUNTS) == [n for n in models.names() if '_tiny' not in n]


@pytest.mark.slow
@pytest.mark.parametrize('name,count', sorted(PUBLISHED_COUNTS.items()))
def test_standard_parameter_counts_equal_torchvision_and_timm(name, count):
  assert _param_count(name, num_classes=1000, in_channels=3, image_size=224) == count


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vgg_tiny', 'resnet_tiny', 'vit_tiny'])
def test_cpu_variants_forward_and_cam_layers(name):
  model = models.create(name, num_classes=1, image_size=64)
  x = jnp.zeros((2, 64, 64, 1))
  assert model(x).shape == (2, 1)
  assert models.create(name, num_classes=5, image_size=64)(x).shape == (2, 5)
  layer = models.default_cam_layer(model)
  assert layer in models.cam_layers(model)
  taps = models.Taps(record=[layer])
  model(x, taps=taps)
  grid = model.to_grid(layer, taps.acts[layer])
  assert grid.ndim == 4 and grid.shape[0] == 2 and grid.shape[1] == grid.shape[2] > 1


def test_default_layers_follow_the_literature():
  assert models.default_cam_layer(models.create('resnet_tiny', image_size=32)) == 'layer4'
  # torchvision vgg16: features.29 is the ReLU after the last conv, features.30 the last pool.
  vgg = nnx.eval_shape(lambda: models.create('vgg16', in_channels=3, num_classes=10))
  assert models.default_cam_layer(vgg) == 'features.29'
  vit = nnx.eval_shape(lambda: models.create('vit_s16', in_channels=3, image_size=224))
  assert models.default_cam_layer(vit) == 'blocks.11.norm1'


def test_vit_to_grid_drops_the_class_token():
  vit = models.create('vit_tiny', image_size=32)
  tokens = jnp.arange(1 * 5 * 3, dtype=jnp.float32).reshape(1, 5, 3)  # 1 + 2x2 tokens
  grid = vit.to_grid('blocks.0.norm1', tokens)
  np.testing.assert_array_equal(grid[0, 0, 1], tokens[0, 2])
  np.testing.assert_array_equal(grid[0, 1, 0], tokens[0, 3])


def test_bad_names_list_the_choices():
  with pytest.raises(ValueError, match='unknown model .resnet7.*resnet18'):
    models.create('resnet7')
  model = models.create('resnet_tiny', image_size=32)
  with pytest.raises(BadInput, match="unknown CAM layer 'layer9'.*layer1, layer2, layer3, layer4"):
    models.resolve_layer(model, 'layer9')
  assert models.resolve_layer(model, None) == 'layer4'


def test_taps_perturbation_shifts_the_activation():
  model = models.create('resnet_tiny', image_size=32)
  x = jax.random.normal(jax.random.key(0), (1, 32, 32, 1))
  taps = models.Taps(record=['layer3'])
  base = model(x, taps=taps)
  delta = jnp.zeros_like(taps.acts['layer3'])
  same = model(x, taps=models.Taps(deltas={'layer3': delta}))
  np.testing.assert_allclose(base, same, rtol=1e-6)
  moved = model(x, taps=models.Taps(deltas={'layer3': delta + 1.0}))
  assert not np.allclose(base, moved)


@pytest.mark.parametrize('name', ['vgg_tiny', 'resnet_tiny', 'vit_tiny'])
def test_graph_definitions_hash(name):
  """Compiled functions are cached by graph definition (``train.step.make_predict``), so every
  static attribute of a model must hash."""
  graphdef = nnx.split(models.create(name, image_size=32))[0]
  assert hash(graphdef) == hash(nnx.split(models.create(name, image_size=32))[0])


def test_the_depth_series_differ_only_in_depth():
  """At 64 px every member of a family's series has an 8x8 CAM grid and the family's widths;
  depth (weight layers on the longest path) grows by 4, 8 and 4 layers a level."""
  from cam_jax import cams  # pylint: disable=g-import-not-at-top
  expected = {'vgg': (7, 11, 15), 'resnet': (10, 18, 26), 'vit': (9, 13, 17)}
  for family, depths in expected.items():
    widths = set()
    for k, want in zip(registry.SERIES_LEVELS, depths):
      name = f'{family}_tiny_{k}'
      model = models.create(name, image_size=64)
      assert models.depth(model) == want and models.family(name) == family
      fn, state, layer = cams.cam_function(model, 'gradcam', None)
      raw, _ = fn(state, jnp.zeros((1, 64, 64, 1)), jnp.ones((1,)))
      assert raw.shape[1:3] == (8, 8), (name, layer, raw.shape)
      widths.add(tuple(sorted({x.shape[-1] for x in jax.tree.leaves(nnx.state(model, nnx.Param))
                               if x.ndim == 4})))
    assert len(widths) == 1, (family, widths)
