"""Gradient-weighted CAMs. Each maps one image's activation and gradient (h, w, C) to the
weighted activation (h, w, C) whose channel sum is the CAM (pytorch-grad-cam's definitions)."""

import jax.numpy as jnp


def grad_cam(act, grad):
  """Grad-CAM (Selvaraju et al., ICCV 2017): channels weighted by the spatial mean gradient."""
  return act * jnp.mean(grad, axis=(0, 1))


def hires_cam(act, grad):
  """HiResCAM (Draelos & Carin 2020): the element-wise product, no spatial averaging."""
  return act * grad


def grad_cam_elementwise(act, grad):
  """Grad-CAM element-wise (pytorch-grad-cam): the ReLU of the element-wise product."""
  return jnp.maximum(act * grad, 0.0)


def xgrad_cam(act, grad):
  """XGrad-CAM (Fu et al., BMVC 2020): weights sum(grad * act) / (sum(act) + 1e-7)."""
  weights = jnp.sum(grad * act, axis=(0, 1)) / (jnp.sum(act, axis=(0, 1)) + 1e-7)
  return act * weights


def grad_cam_plus_plus(act, grad):
  """Grad-CAM++ (Chattopadhay et al., WACV 2018), with the exponential-free closed form of
  alpha = g^2 / (2 g^2 + sum(A) g^3 + 1e-6), zero where the gradient is zero."""
  g2 = grad ** 2
  alpha = g2 / (2 * g2 + jnp.sum(act, axis=(0, 1)) * g2 * grad + 1e-6)
  alpha = jnp.where(grad != 0, alpha, 0.0)
  return act * jnp.sum(jnp.maximum(grad, 0.0) * alpha, axis=(0, 1))


def layer_cam(act, grad):
  """LayerCAM (Jiang et al., IEEE TIP 2021): activations weighted by the positive gradient."""
  return jnp.maximum(grad, 0.0) * act
