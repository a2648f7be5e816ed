"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): the first principal component of the activations,
no gradients and no target; Eigen-Grad-CAM (pytorch-grad-cam): the same of gradient x
activation."""

from cam_jax.cams.base import projection_2d


def eigen_cam(act):
  """The (h, w) projection of one image's (h, w, C) activation on its first principal axis.

  The sign of a principal axis is arbitrary; like pytorch-grad-cam, none is imposed.
  """
  return projection_2d(act)


def eigen_grad_cam(act, grad):
  """The (h, w) first principal component of the element-wise product ``grad * act``."""
  return projection_2d(act * grad)
