"""``python -m launch.study`` from a checkout: the same as ``cam_jax study``."""

import sys

from cam_jax import cli

if __name__ == '__main__':
  cli.main(['study', *sys.argv[1:]])
