"""What a run writes about its held-out evaluations, beside its checkpoints.

    WORKDIR/evals.jsonl   one JSON line per held-out evaluation, in order
    WORKDIR/target.json   the first evaluation that reached
                          config.target_mlm_accuracy (absent until then)

An evaluation line holds `step`, `phase` (its name), `examples` (training
examples seen since the run began, across phases and resumes; a packed row
counts each example in it), `train_time_s` (the run's training clock,
evaluation excluded) and every `eval_*` metric. `target.json` holds `target`,
`step`, `phase`, `examples`, `train_time_s` and `mlm_accuracy`.

Both follow the checkpoint a run resumes from: lines past its step are
dropped and `target.json` is what that checkpoint recorded, so a run killed
after an evaluation and resumed from an earlier checkpoint writes the same
files as one never killed. Each write replaces the file whole (temporary
name, then rename): a kill never leaves half a line. `read` is what
`bert_jax.stats.time_to_target` and seed sweeps read.
"""

from __future__ import annotations

import json

from data_prep import fileio

EVALS = "evals.jsonl"
TARGET = "target.json"


class HistoryError(ValueError):
  """A workdir's history file that cannot be read."""


def _read_evals(path: str) -> list[dict]:
  out = []
  text = fileio.read_bytes(path).decode("utf-8")
  for n, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    try:
      entry = json.loads(line)
      int(entry["step"])
    except (ValueError, KeyError, TypeError) as e:
      raise HistoryError(f"{path}:{n}: not an evaluation record ({e!r}); "
                         "written by bert_jax.train?") from None
    out.append(entry)
  return out


def read(workdir: str) -> tuple[list[dict], dict | None]:
  """(evaluations in step order, target record or None) of a workdir."""
  evals_path = fileio.join(workdir, EVALS)
  evals = _read_evals(evals_path) if fileio.exists(evals_path) else []
  target_path = fileio.join(workdir, TARGET)
  target = None
  if fileio.exists(target_path):
    try:
      target = json.loads(fileio.read_bytes(target_path))
    except ValueError as e:
      raise HistoryError(f"{target_path}: not JSON ({e}).") from None
  return sorted(evals, key=lambda e: int(e["step"])), target


class History:
  """The run's `evals.jsonl` and `target.json`, kept in step with its
  checkpoints. `write=False` (processes other than 0) keeps the history in
  memory only."""

  def __init__(self, workdir: str, resumed_step: int | None,
               target: dict | None, write: bool = True):
    """`resumed_step`: the checkpoint resumed from (None: a fresh start);
    `target`: the target record that checkpoint holds."""
    self._workdir, self._write = workdir, write
    path = fileio.join(workdir, EVALS)
    old = _read_evals(path) if write and fileio.exists(path) else []
    keep = -1 if resumed_step is None else resumed_step
    self.evals = [e for e in old if int(e["step"]) <= keep]
    if len(self.evals) != len(old):
      self._save_evals()
    self.target = target
    if write:
      target_path = fileio.join(workdir, TARGET)
      if target is not None:
        fileio.write_atomic(target_path, json.dumps(target, indent=1) + "\n")
      elif fileio.exists(target_path):
        fileio.remove(target_path)

  def _save_evals(self) -> None:
    if self._write:
      fileio.write_atomic(fileio.join(self._workdir, EVALS), "".join(
          json.dumps(e, sort_keys=True) + "\n" for e in self.evals))

  def add(self, entry: dict) -> None:
    """One evaluation (`step`, `phase`, `examples`, `train_time_s`,
    `eval_*`)."""
    self.evals.append(entry)
    self._save_evals()

  def reached(self, record: dict) -> None:
    """The first evaluation at the target: `target.json`."""
    self.target = record
    if self._write:
      fileio.write_atomic(fileio.join(self._workdir, TARGET),
                          json.dumps(record, indent=1) + "\n")
