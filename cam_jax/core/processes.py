"""One job over several processes (hosts): joining it, and what its processes must agree on.

``join`` calls ``jax.distributed.initialize`` before anything touches a device. What it is not
given it takes from the environment: ``JAX_COORDINATOR_ADDRESS``, then jax's cluster detection
(a Cloud TPU VM slice, SLURM, Open MPI, Kubernetes). Each process then sees every device of
the job in ``jax.devices()`` and feeds its own ``jax.local_devices()``.
"""

from __future__ import annotations

import jax
import numpy as np

from cam_jax.core.errors import BadInput


def join(coordinator_address: str = '', num_processes: int = 0, process_id: int = -1) -> None:
  """``jax.distributed.initialize`` with the given settings; '' / 0 / -1 mean "from the
  environment". A setting neither given nor found is bad input that names the flag."""
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address or None,
                               num_processes=num_processes or None,
                               process_id=None if process_id < 0 else process_id)
  except (ValueError, TypeError) as e:
    raise BadInput(f'cannot join the multi-process job: {e} (give --coordinator_address=HOST:PORT '
                   '--num_processes=N --process_id=I, or run where jax detects the cluster: a '
                   'Cloud TPU VM slice, SLURM, Open MPI, Kubernetes)') from e


def is_primary() -> bool:
  """Whether this process writes what is written once per job (logs, reports, JSON)."""
  return jax.process_index() == 0


def any_process(flag: bool) -> bool:
  """True on every process when ``flag`` is True on any of them (a collective: every process
  must call it at the same point)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.asarray([flag], np.int32))))
