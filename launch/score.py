"""``python -m launch.score`` from a checkout: the same as ``cam_jax score``."""

import sys

from cam_jax import cli

if __name__ == '__main__':
  cli.main(['score', *sys.argv[1:]])
