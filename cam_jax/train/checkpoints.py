"""A training run's state on disk: orbax ``CheckpointManager`` steps holding the train state
(weights, batch statistics, optimiser state, EMA, step), the grain iterator's position and the
history so far, saved together.

The manager keeps the latest ``keep`` steps and the best by validation ROC-AUC (orbax's
``LatestN`` and ``BestN`` preservation policies, orbax-checkpoint 0.12). Saves are asynchronous;
``wait`` blocks until every one is on disk. ``run.json`` beside the steps records what the run
is (model recipe, training config, data); a run started again in the same directory resumes
from the newest step that reads back, and refuses when ``run.json`` differs.
"""

from __future__ import annotations

import json
import os

import grain
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from cam_jax.core import processes
from cam_jax.core.errors import BadInput

RUN_SPEC = 'run.json'
BEST_METRIC = 'val_roc_auc'  # -1 where undefined (one class in validation): ranks last


def spec_differences(saved: dict, current: dict, prefix: str = '') -> list[str]:
  """``'a.b: X in the checkpoint, Y now'`` for every field where two nested dicts differ."""
  out = []
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key, '(absent)'), current.get(key, '(absent)')
    if isinstance(a, dict) and isinstance(b, dict):
      out += spec_differences(a, b, f'{prefix}{key}.')
    elif a != b:
      out.append(f'{prefix}{key}: {a!r} in the checkpoint, {b!r} now')
  return out


class TrainCheckpoints:
  """The steps of one run under ``directory``; see the module docstring."""

  def __init__(self, directory: str, run_spec: dict, *, keep: int, log=print):
    self.directory, self._log = os.path.abspath(directory), log
    self._check_spec(run_spec)
    score = lambda metrics: metrics[BEST_METRIC]
    preserve = policies.AnyPreservationPolicy([
        policies.LatestN(n=max(1, keep)),
        policies.BestN(get_metric_fn=score, n=1, keep_checkpoints_without_metrics=False)])
    # best_fn makes the manager write each step's metrics; the policy decides what is kept.
    options = ocp.CheckpointManagerOptions(best_fn=score, best_mode='max',
                                           preservation_policy=preserve, create=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def _check_spec(self, run_spec: dict) -> None:
    path = os.path.join(self.directory, RUN_SPEC)
    current = json.loads(json.dumps(run_spec))
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
      differences = spec_differences(saved, current)
      if differences:
        raise BadInput(f'{self.directory} holds the checkpoints of another run ({path}): '
                       f'{"; ".join(differences)}; use a new workdir or delete that one')
    elif processes.is_primary():
      os.makedirs(self.directory, exist_ok=True)
      with open(path, 'w') as f:
        json.dump(current, f, indent=1, sort_keys=True)

  def save(self, step: int, state, data_iterator, meta: dict, val_roc_auc: float | None = None):
    """Starts saving ``step`` (returns once the arrays are copied off the devices)."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=grain.checkpoint.CheckpointSave(data_iterator),
                              meta=ocp.args.JsonSave(meta))
    metrics = None if val_roc_auc is None else {BEST_METRIC: float(val_roc_auc)}
    self._manager.save(step, args=args, metrics=metrics, force=True)

  def restore_latest(self, abstract_state, data_iterator):
    """(state, meta, step) of the newest step that reads back, ``data_iterator`` set to its
    position; None when there is no step. Unreadable newer steps (a corrupt or half-written
    save) are reported, then deleted once an older one has been restored."""
    self._manager.reload()
    failed = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        out = self._restore(step, abstract_state, data_iterator)
      except Exception as e:  # pylint: disable=broad-except
        failed.append((step, f'{type(e).__name__}: {" ".join(str(e).split())[:300]}'))
        continue
      for bad, why in failed:
        self._log(f'warning: checkpoint step {bad} in {self.directory} does not read back '
                  f'({why}); deleted it and resumed from step {step}')
        self._manager.delete(bad)
      return out['state'], out['meta'], step
    if failed:
      raise BadInput(f'no checkpoint in {self.directory} reads back: '
                     + '; '.join(f'step {s}: {why}' for s, why in failed))
    return None

  def _restore(self, step, abstract_state, data_iterator=None):
    items = {'state': ocp.args.StandardRestore(abstract_state), 'meta': ocp.args.JsonRestore()}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    return self._manager.restore(step, args=ocp.args.Composite(**items))

  def restore_state(self, step: int, abstract_state):
    """The train state saved at ``step``."""
    return self._restore(step, abstract_state)['state']

  def best_step(self) -> int | None:
    """The step with the highest validation ROC-AUC, the later of ties (what ``BestN`` keeps)."""
    return self._manager.best_step()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
