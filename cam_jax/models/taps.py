"""Named activation points ("taps") inside a forward pass.

A model calls ``taps(name, x)`` at every layer a CAM may explain. The tap records the
activation when asked to and adds an optional perturbation. Adding a zero perturbation
``delta`` at a layer makes ``d output / d delta`` the gradient with respect to that
layer's activation, so CAM methods differentiate only there: no parameter gradients,
no backward pass below the layer.
"""

from __future__ import annotations

import jax


class Taps:
  """Records the activations named in ``record`` and adds ``deltas[name]`` where given."""

  def __init__(self, record=(), deltas: dict[str, jax.Array] | None = None):
    self.record = frozenset(record) | frozenset(deltas or ())
    self.deltas = dict(deltas or {})
    self.acts: dict[str, jax.Array] = {}

  def __call__(self, name: str, x: jax.Array) -> jax.Array:
    if name in self.deltas:
      x = x + self.deltas[name]
    if name in self.record:
      self.acts[name] = x
    return x


NO_TAPS = Taps()
