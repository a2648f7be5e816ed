"""What every verb shares: logging, and errors that tell the truth.

A user's bad input (``core.errors.BadInput``: an unknown name, a bad config field or value, a
missing file) prints one line on stderr and exits 2; ``--traceback`` prints its traceback too.
Every other exception is a bug in cam_jax and prints its traceback. A run stopped by SIGTERM or
SIGINT after saving its checkpoint (``train.preemption.Preempted``) says where and exits 0.

A verb run as one process of a multi-process job (``--distributed``, or any of the coordinator
flags) joins it before anything touches a device (``core.processes.join``); then only process 0
prints log lines.
"""

import importlib.util
import re
import sys
import time
import traceback

from absl import app, flags, logging

from cam_jax.core import compile_cache, processes
from cam_jax.core.errors import BadInput
from cam_jax.train.preemption import Preempted

_T0 = time.time()
_TRACEBACK = flags.DEFINE_boolean('traceback', False, 'Print the traceback of a bad-input error '
                                  'too (every other error prints its traceback anyway).')
_DISTRIBUTED = flags.DEFINE_boolean(
    'distributed', False, 'Run as one process of a multi-process job (jax.distributed). '
    'Settings not given below come from the environment: JAX_COORDINATOR_ADDRESS, or the cluster '
    '(Cloud TPU VM slice, SLURM, Open MPI, Kubernetes).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', '', 'HOST:PORT of process 0 '
                                   '(implies --distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0, 'Processes in the job (implies '
                                      '--distributed).')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1, "This process's index, 0 to N-1 (implies "
                                   '--distributed).')


def log(message: str) -> None:
  if not processes.is_primary():
    return
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
  """absl's flag parsing; a bad flag, config file, config argument or override is bad input."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    if '--traceback' in argv:
      traceback.print_exc()
    spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    if spec:
      try:
        message = unknown_override(_load_config(spec), argv)
      except Exception:  # pylint: disable=broad-except
        message = None  # the config itself fails: absl's message below says how
      if message:
        _fail(message)
    text = str(e).strip()
    line = text.splitlines()[-1] if 'Traceback' in text else ' '.join(text.split())
    _fail(re.sub(r'^([\w.]+\.)?(BadInput|MissingInput): ', '', line))


def run(main, argv: list[str] | None = None, *, compiles: bool = False) -> None:
  """``app.run(main)`` with the error handling of the module docstring; ``compiles``: the verb
  compiles XLA programs worth keeping (``core.compile_cache``)."""

  def guarded(argv):
    logging.set_verbosity(logging.ERROR)  # orbax, grain and tfds log routine steps
    if compiles:
      compile_cache.enable()
    try:
      if (_DISTRIBUTED.value or _COORDINATOR.value or _NUM_PROCESSES.value
          or _PROCESS_ID.value >= 0):
        processes.join(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
      main(argv)
    except Preempted as e:
      log(str(e))
      sys.exit(0)
    except BadInput as e:
      if _TRACEBACK.value:
        traceback.print_exc()
      _fail(' '.join(str(e).split()))

  app.run(guarded, argv=argv, flags_parser=_parse)
