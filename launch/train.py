"""``python -m launch.train`` from a checkout: the same as ``cam_jax train``."""

import sys

from cam_jax import cli

if __name__ == '__main__':
  cli.main(['train', *sys.argv[1:]])
