"""The command line: ``cam_jax <verb> --config=FILE[:arg] --workdir=DIR [--config.a.b=v ...]``.

One module per verb, each defining its absl flags and ``main(argv)``; ``python -m cam_jax``
and, from a checkout, ``python -m launch.<verb>`` run the same verbs.
"""

import importlib
import sys

VERBS = ('prepare', 'train', 'score', 'study', 'report', 'bench')
COMPILING = ('train', 'score', 'study', 'bench')  # verbs whose XLA programs are cached


def main(argv: list[str] | None = None) -> None:
  """Runs the verb ``argv[0]`` (default: ``sys.argv[1:]``) with the rest as its flags."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] not in VERBS:
    got = f'unknown verb {argv[0]!r}; ' if argv and not argv[0].startswith('-') else ''
    print(f'error: {got}usage: cam_jax <verb> --config=FILE[:arg] --workdir=DIR '
          f'[--config.<field>=<value> ...]; verbs: {", ".join(VERBS)}', file=sys.stderr)
    sys.exit(2)
  from cam_jax.cli import common  # pylint: disable=g-import-not-at-top
  verb = importlib.import_module(f'cam_jax.cli.{argv[0]}')
  common.run(verb.main, [f'cam_jax {argv[0]}', *argv[1:]], compiles=argv[0] in COMPILING)
