"""Orbax checkpoints: periodic + keep-forever schedule, exact restore, preemption.

A checkpoint holds the train state (params, optimizer state, phase-local
step) and JSON metadata, the run's record (`runs.RunMeta`: phase, step within
it, input position, clock, config). It is saved asynchronously at
every `save_every` steps, at every step of the keep-forever schedule (kept
regardless of `keep_last`), at the end of each phase, and when the process is
asked to stop (SIGTERM, Ctrl-C, or a JAX preemption notice; the trainer then
exits with PREEMPTED_EXIT_CODE). Restores go into the
shardings of the current mesh, so a different device count or mesh shape
works. Orbax writes to a temporary directory and renames it when complete, so
a half-written checkpoint is never restored.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import signal
import threading
from typing import Any, Sequence

from absl import logging
from data_prep import fileio
from etils import epath
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


def keep_forever_steps(rule: Sequence[Sequence[int]], last_step: int) -> list[int]:
  """Steps from a rule like ((200000, 20000), (2000000, 100000)): every 20k up
  to 200k, then every 100k up to 2M (the MultiBERTs schedule), plus step 0
  (the initialisation) unless the rule is empty."""
  if not rule:
    return []
  steps, start = {0}, 0
  for until, every in rule:
    if every <= 0:
      raise ValueError(f"checkpoint.keep_forever: interval {every} must be > 0.")
    steps.update(range(start, min(until, last_step) + 1, every))
    start = until
  return sorted(s for s in steps if s <= last_step)


# The trainer's exit code after a stop request (SIGTERM, Ctrl-C, a preemption
# notice) was saved: EX_TEMPFAIL, "try again" — requeue on it.
PREEMPTED_EXIT_CODE = 75


class _QuietOrbax(std_logging.Filter):
  """Orbax's INFO lines (most of a short run's log) and its read-only
  notice off, unless --verbosity=1 or more."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if logging.get_verbosity() >= logging.DEBUG:
      return True
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    return (record.levelno >= std_logging.WARNING and
            "read only" not in record.getMessage())


def quiet_orbax() -> None:
  log = logging.get_absl_logger()
  if not any(isinstance(f, _QuietOrbax) for f in log.filters):
    log.addFilter(_QuietOrbax())


class CheckpointError(OSError):
  """A checkpoint could not be written; earlier ones are intact."""


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` for this trainer."""

  def __init__(self, workdir: str, save_every: int = 1, keep_last: int = 1,
               keep_forever: Sequence[int] = (), async_save: bool = True,
               read_only: bool = False):
    quiet_orbax()
    self.keep_forever = sorted(set(keep_forever))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=policies.AnySavePolicy([
            policies.FixedIntervalPolicy(max(1, save_every)),
            policies.SpecificStepsPolicy(self.keep_forever),
            policies.PreemptionCheckpointingPolicy(),
        ]),
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(keep_last),
            policies.CustomSteps(self.keep_forever),
        ]),
        enable_async_checkpointing=async_save and not read_only,
        read_only=read_only, create=not read_only)
    self.manager = ocp.CheckpointManager(
        epath.Path(fileio.resolve(workdir)) / "checkpoints", options=options,
        item_names=("state", "meta"))
    self._stop = threading.Event()
    self._pending: int | None = None  # step of an asynchronous save under way

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def should_save(self, step: int) -> bool:
    return self.manager.should_save(step)

  def save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
    """Starts a save if the policies (or `force`) ask for one; raises
    CheckpointError if it, or the previous asynchronous one, failed."""
    try:
      saved = self.manager.save(
          step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                        meta=ocp.args.JsonSave(meta)),
          force=force)
    except Exception as e:  # pylint: disable=broad-exception-caught
      # e.g. a full disk or a vanished directory, here or in the previous
      # asynchronous save (which Orbax waits for first).
      raise CheckpointError(self._failed(self._pending or step, e)) from e
    if saved:
      self._pending = step
    return saved

  def check(self, step: int | None = None) -> None:
    """Raises CheckpointError as soon as an asynchronous save has failed
    (`step`: the training step just done, for the message); cheap and
    non-blocking, so the trainer calls it after every step."""
    if self._pending is not None and not self.manager.is_saving_in_progress():
      self.wait(step)

  def _failed(self, step, error, noticed: int | None = None) -> str:
    at = "" if noticed is None else f" (training stopped after step {noticed})"
    return (f"Saving checkpoint step {step} under {self.manager.directory} "
            f"failed{at}: {type(error).__name__}: {error}. Completed checkpoints "
            f"are intact (steps {self._completed(step)}); free space or fix "
            "the path and rerun the same command to resume.")

  def _completed(self, failed: int) -> list[int]:
    try:
      steps = self.all_steps()
    except Exception:  # pylint: disable=broad-exception-caught
      return []
    return [s for s in steps if s != failed]

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores into the shardings carried by `abstract_state`."""
    out = self.manager.restore(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def restore_arrays(self, step: int) -> tuple[Any, dict]:
    """Restores without a target (as saved), e.g. for export or inspection."""
    out = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                      meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def restore_params(self, step: int, abstract_params: Any) -> Any:
    """Only `state["params"]` (no optimizer state), into the shardings of
    `abstract_params`: for exports, feature extraction and `init_from`."""
    target = {"params": abstract_params}
    out = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=target, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target))))
    return out["state"]["params"]

  def restore_meta(self, step: int) -> dict:
    out = self.manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return out["meta"]

  # Preemption -------------------------------------------------------------
  @contextlib.contextmanager
  def stop_on_signals(self):
    """Within: SIGTERM or a first Ctrl-C (SIGINT) asks to finish the current
    step, save and stop (the trainer then exits with PREEMPTED_EXIT_CODE); a
    second Ctrl-C aborts at once. The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
      yield
      return

    def on_term(*_):
      self._stop.set()

    def on_int(*_):
      if self._stop.is_set():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
      self._stop.set()
      logging.warning("Ctrl-C: saving after this step, then stopping "
                      "(Ctrl-C again aborts without saving).")

    previous = {s: signal.signal(s, h) for s, h in (
        (signal.SIGTERM, on_term), (signal.SIGINT, on_int))}
    try:
      yield
    finally:
      for sig, handler in previous.items():
        signal.signal(sig, handler)

  def should_stop(self, step: int) -> bool:
    return self._stop.is_set() or self.manager.reached_preemption(step)

  def request_stop(self) -> None:
    self._stop.set()

  def wait(self, noticed: int | None = None) -> None:
    """Blocks until the asynchronous save (if any) is done; raises
    CheckpointError naming its step if it failed."""
    step, self._pending = self._pending, None
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise CheckpointError(self._failed(step, e, noticed)) from e

  def close(self) -> None:
    self.manager.close()

  def abandon(self) -> None:
    """On an error: lets a save in flight finish and closes, quietly (the
    error being raised is the one to report)."""
    try:
      self.manager.wait_until_finished()
      self.manager.close()
    except Exception:  # pylint: disable=broad-exception-caught
      pass
