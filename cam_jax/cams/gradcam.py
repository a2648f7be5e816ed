"""Grad-CAM (Selvaraju et al., ICCV 2017): channel weights are the spatial mean of the gradient."""

import jax.numpy as jnp


def grad_cam(act, grad):
  """``sum_c mean_ij(dy/dA_c) * A_c`` for one image's (h, w, C) activation and gradient."""
  weights = jnp.mean(grad, axis=(0, 1))
  return jnp.einsum('hwc,c->hw', act, weights)
