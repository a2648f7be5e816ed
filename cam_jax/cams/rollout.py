"""Attention rollout (Abnar & Zuidema, ACL 2020) for ViTs: how much each patch token flows into
the class token through every block's attention, residual connections included."""

import jax.numpy as jnp


def attention_rollout(attentions):
  """Heads averaged, the residual added as (A + I) / 2 with rows renormalised, the blocks
  multiplied in order; returns the class token's row over all tokens (N,)."""
  rollout = None
  for a in attentions:                      # (heads, N, N) per block, input to output order
    a = jnp.mean(a.astype(jnp.float32), axis=0)
    a = (a + jnp.eye(a.shape[-1])) / 2
    a = a / jnp.sum(a, axis=-1, keepdims=True)
    rollout = a if rollout is None else a @ rollout
  return rollout[0]
