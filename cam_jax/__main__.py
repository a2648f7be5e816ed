"""``python -m cam_jax <verb> ...``: the same as the ``cam_jax`` command."""

from cam_jax import cli

cli.main()
