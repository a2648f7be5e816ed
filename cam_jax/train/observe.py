"""What a training run tells its user: ``train_log.jsonl`` (one JSON object a row: ``kind`` is
``step``, ``window`` or ``epoch``), TensorBoard event files in ``tensorboard/`` (tensorboardX:
numpy and protobuf, no TensorFlow), a tqdm bar with ETA on a terminal, plain lines otherwise.
Only process 0 writes; a resumed run appends."""

from __future__ import annotations

import json
import os
import sys

JSONL, TENSORBOARD = 'train_log.jsonl', 'tensorboard'


class RunLog:
  def __init__(self, workdir: str, name: str, total_steps: int, start_step: int, *,
               enabled: bool = True, log=print):
    self.name, self._log, self.enabled = name, log, enabled
    self._file = self._writer = self._bar = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._file = open(os.path.join(workdir, JSONL), 'a')  # pylint: disable=consider-using-with
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(os.path.join(workdir, TENSORBOARD), purge_step=start_step)
    if sys.stderr.isatty():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total_steps, initial=start_step, desc=name, unit='step',
                       dynamic_ncols=True, leave=False)

  def _write(self, kind: str, row: dict) -> None:
    self._file.write(json.dumps({'kind': kind, **row}, allow_nan=True) + '\n')
    step = row['step']
    for key, value in row.items():
      if key not in ('step', 'epoch') and isinstance(value, (int, float)):
        self._writer.add_scalar(f'{kind}/{key}', value, step)

  def steps(self, rows: list[dict]) -> None:
    """Per-step rows: step, loss, grad_norm, learning_rate."""
    if not self.enabled:
      return
    for row in rows:
      self._write('step', row)
    if self._bar is not None:
      self._bar.update(len(rows))
      self._bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}")

  def window(self, row: dict) -> None:
    """Throughput over the steps since the last window: images_per_s, step_time_s,
    input_wait_fraction."""
    if not self.enabled:
      return
    self._write('window', row)
    self._file.flush()
    if self._bar is None:
      self._log(f"[{self.name}] step {row['step']}/{row['total_steps']} loss {row['loss']:.4f} "
                f"{row['images_per_s']:.1f} images/s, input wait "
                f"{100 * row['input_wait_fraction']:.0f}%")

  def epoch(self, row: dict, line: str) -> None:
    if not self.enabled:
      return
    self._write('epoch', row)
    self._file.flush()
    self._writer.flush()
    (self._bar.write if self._bar is not None else self._log)(line)

  def message(self, line: str) -> None:
    if self.enabled:
      (self._bar.write if self._bar is not None else self._log)(line)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.close()
    if self._file is not None:
      self._file.close()
