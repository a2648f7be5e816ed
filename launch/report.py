"""``python -m launch.report`` from a checkout: the same as ``cam_jax report``."""

import sys

from cam_jax import cli

if __name__ == '__main__':
  cli.main(['report', *sys.argv[1:]])
