"""Metric kernels: per-image localisation, faithfulness and similarity in pure jnp (jitted and
vmapped by the scoring driver), and classification metrics of a whole set on the host."""
