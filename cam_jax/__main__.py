"""``python -m cam_jax <verb> ...``: the same as the ``cam_jax`` command."""

from cam_jax import cli

if __name__ == '__main__':  # not when a worker process of ``cam_jax study`` imports it
  cli.main()
