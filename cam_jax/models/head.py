"""Reading a classifier's head: the probability of the positive finding."""

import jax


def positive_probability(logits: jax.Array) -> jax.Array:
  """P(class 1): sigmoid of a one-logit head, softmax column 1 otherwise."""
  if logits.shape[-1] == 1:
    return jax.nn.sigmoid(logits[:, 0])
  return jax.nn.softmax(logits, axis=-1)[:, 1]
