"""``python -m launch.prepare`` from a checkout: the same as ``cam_jax prepare``."""

import sys

from cam_jax import cli

if __name__ == '__main__':
  cli.main(['prepare', *sys.argv[1:]])
