"""bfloat16 CAMs and scoring (``cam.dtype``): the same float32 weights computing in bfloat16, the
maps normalised and scored in float32, close to the float32 maps and metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import cam_jax
from cam_jax import cams, models
from cam_jax.core.errors import BadInput
from cam_jax.models import checkpoint


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  recipe = checkpoint.recipe('resnet_tiny_1', 1, 32, seed=0, normalisation=(0.45, 0.2))
  path = str(tmp_path_factory.mktemp('ckpt') / 'checkpoint')
  checkpoint.save(path, recipe, models.create(**recipe))
  return path


def test_a_bfloat16_model_keeps_float32_weights_and_computes_in_bfloat16(saved, tiny_splits):
  full, _ = checkpoint.load(saved, log=lambda m: None)
  half, _ = checkpoint.load(saved, log=lambda m: None, dtype='bfloat16')
  test = tiny_splits['test']
  images = jnp.asarray(full.normalisation.normalise(np.stack([test[i]['image']
                                                              for i in range(8)])))
  targets = jnp.ones(8)
  out = {}
  for name, model in (('float32', full), ('bfloat16', half)):
    fn, state, _ = cams.cam_function(model, 'gradcam')
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {np.dtype('float32')}
    raw, logits = fn(state, images, targets)
    heat, _ = cams.postprocess(raw, (32, 32))
    out[name] = heat, np.asarray(logits)
  # The bfloat16 model's logits came out of bfloat16 arithmetic: each is a bfloat16 value.
  logits16 = out['bfloat16'][1]
  assert (logits16 == logits16.astype(jnp.bfloat16).astype(np.float32)).all()
  assert not (out['float32'][1] == out['float32'][1].astype(jnp.bfloat16).astype(np.float32)).all()
  assert out['bfloat16'][0].dtype == jnp.float32  # normalised and scored in float32
  heat32, heat16 = np.asarray(out['float32'][0]), np.asarray(out['bfloat16'][0])
  assert not np.array_equal(heat32, heat16)  # the dtype took effect
  assert np.abs(heat16 - heat32).mean() < 0.02  # bfloat16 keeps 8 bits of mantissa
  np.testing.assert_allclose(logits16, out['float32'][1], rtol=0.02, atol=0.02)


@pytest.mark.slow
def test_bfloat16_records_are_close_to_float32(saved, tiny_splits):
  records = {dt: cam_jax.score(checkpoint.load(saved, log=lambda m: None, dtype=dt)[0],
                               tiny_splits['test'], batch_size=8, progress=False,
                               n_resamples=10).records for dt in ('float32', 'bfloat16')}
  lesion = records['float32']['has_mask']
  for metric, tolerance in (('ehr_auc', 0.02), ('relevance_mass', 0.02),
                            ('pixel_roc_auc', 0.02)):
    difference = (records['bfloat16'][metric] - records['float32'][metric])[lesion].abs()
    assert difference.mean() < tolerance, (metric, difference.mean())
  np.testing.assert_allclose(records['bfloat16']['prob'], records['float32']['prob'], atol=0.01)


def test_an_unknown_compute_dtype_names_the_choices(saved):
  with pytest.raises(BadInput, match="unknown dtype 'float16'; choose one of: float32, bfloat16"):
    checkpoint.load(saved, log=lambda m: None, dtype='float16')
  with pytest.raises(BadInput, match="unknown cam.dtype 'fp8'"):
    models.compute_dtype('fp8', 'cam.dtype')
