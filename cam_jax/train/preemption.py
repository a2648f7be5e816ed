"""Stopping at a step boundary on SIGTERM or SIGINT, so a preempted run saves and exits 0.

orbax's own preemption detection works only under ``jax.distributed``; a single-process run on a
spot VM or under a batch scheduler gets SIGTERM, which this turns into a flag the loop reads.
A second signal stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
import threading


class Preempted(Exception):
  """Training stopped on request after saving a checkpoint; the same command resumes it."""


class StopRequest:
  """``with StopRequest(log) as stop:`` ... ``if stop.requested:`` at each step boundary."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, log=print):
    self._log, self._old, self.signal_name = log, {}, None

  @property
  def requested(self) -> bool:
    return self.signal_name is not None

  def _handle(self, signum, frame):
    del frame
    if self.requested:
      raise KeyboardInterrupt(f'second {signal.Signals(signum).name}: stopping without saving')
    self.signal_name = signal.Signals(signum).name
    self._log(f'{self.signal_name}: saving a checkpoint at the next step boundary, then stopping '
              '(send it again to stop at once)')

  def __enter__(self) -> 'StopRequest':
    if threading.current_thread() is threading.main_thread():
      self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._old.items():
      signal.signal(s, handler)
