"""``python -m launch.bench`` from a checkout: the same as ``cam_jax bench``."""

import sys

from cam_jax import cli

if __name__ == '__main__':
  cli.main(['bench', *sys.argv[1:]])
