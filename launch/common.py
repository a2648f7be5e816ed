"""What every entry point shares: logging, and bad input turned into a one-line error."""

import importlib.util
import sys
import time

from absl import app, flags, logging

_T0 = time.time()


def log(message: str) -> None:
  print(f'[{time.time() - _T0:7.1f}s] {message}', flush=True)


def _fail(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _load_config(spec: str):
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def unknown_override(config, argv: list[str]) -> str | None:
  """The first ``--config.a.b=...`` naming a field ``config`` lacks, as a message, else None."""
  for a in argv:
    if not a.startswith('--config.'):
      continue
    node, path = config, []
    for part in a[len('--config.'):].split('=')[0].split('.'):
      if not hasattr(node, 'keys') or part not in node.keys():
        where = '.'.join(['config'] + path)
        choices = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(none: a leaf)'
        return f'unknown config field {part!r} in {where}; choose one of: {choices}'
      node, path = node[part], path + [part]
  return None


def _parse(argv: list[str]):
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    if spec:
      try:
        message = unknown_override(_load_config(spec), argv)
      except Exception:  # pylint: disable=broad-except
        message = None
      if message:
        _fail(message)
    text = str(e).strip()
    _fail(text.splitlines()[-1] if 'Traceback' in text else ' '.join(text.split()))


def run(main) -> None:
  """``app.run(main)``; bad flags, config fields, ValueError and FileNotFoundError exit 2 with
  one line on stderr."""

  def guarded(argv):
    logging.set_verbosity(logging.ERROR)  # orbax, grain and tfds log routine steps
    try:
      main(argv)
    except (ValueError, FileNotFoundError) as e:
      _fail(' '.join(str(e).split()))

  app.run(guarded, flags_parser=_parse)
