"""Held-out evaluation: the forward-only step, a pass over the held-out
shards, and the run's clock for time to accuracy (MLPerf-style)."""

from __future__ import annotations

import math
import time

from absl import logging
import jax

from bert_jax import input_pipeline
from bert_jax import losses
from bert_jax import packing
from bert_jax import sharding
from bert_jax import train_step


def make_eval_step(model):
  """(params, batch) → `losses.pretraining_sums`, deterministic."""
  def eval_step(params, batch):
    mlm, nsp = model.apply({"params": params}, batch["input_ids"],
                           batch["input_mask"], batch["segment_ids"],
                           batch["masked_lm_positions"],
                           masked_lm_ids=batch["masked_lm_ids"],
                           **train_step.packed_features(batch))
    return losses.pretraining_sums(mlm, nsp, batch["masked_lm_ids"],
                                   batch["masked_lm_weights"],
                                   batch["next_sentence_labels"],
                                   batch.get("nsp_weights"))
  return eval_step


class HeldOut:
  """A phase's held-out evaluation. The examples (`config.eval_steps` batches
  of `config.eval_batch_size`) are read on the first call and kept in host
  memory; with `config.eval_packing` they are packed, which gives the same
  per-example results in fewer rows. Metrics are Google's streaming means
  over all the examples (sums over batches, then ratios), so they do not
  depend on how the examples are batched or packed."""

  def __init__(self, eval_step, files: str, phase, s, mesh, mask=None,
               max_predictions: int | None = None):
    """`phase`: a `settings.Phase` (sequence length); `s`: the `Settings`
    (eval_batch_size, eval_steps, eval_packing, data_streams,
    pack_open_rows); `mask`: for shards without masks,
    `dynamic_masking.host_masker`'s function, applied once as read;
    `max_predictions`: the held-out shards' (default: the phase's)."""
    self._step, self._mesh, self._files = eval_step, mesh, files
    self._mask = mask
    self._spec = input_pipeline.DataSpec(
        files, phase.max_seq_length,
        max_predictions or phase.max_predictions_per_seq, s.eval_batch_size)
    self._num_batches = s.eval_steps
    self._packing = s.eval_packing
    self._streams = s.data_streams
    self._open_rows = s.pack_open_rows
    self._batches: list[dict] | None = None

  def _read(self) -> list[dict]:
    try:
      batches = input_pipeline.held_out_batches(
          self._spec, self._num_batches, self._packing, self._streams,
          self._open_rows, self._mask)
    except packing.PackingError as e:
      raise input_pipeline.DataError(
          f"{self._files}: {e} (held-out data: set config.eval_packing=0)"
      ) from e
    if not batches:
      raise input_pipeline.DataError(
          f"{self._files}: fewer held-out records than one evaluation batch "
          f"(eval_batch_size={self._spec.global_batch_size}) per input "
          "stream; lower config.eval_batch_size or hold out more data.")
    logging.info("Held-out evaluation: %d batches of %d rows (%s) from %s, "
                 "%.1f MB kept in host memory.", len(batches),
                 self._spec.global_batch_size,
                 f"packed, up to {self._packing} examples per row"
                 if self._packing else "unpacked", self._files,
                 sum(v.nbytes for b in batches for v in b.values()) / 2**20)
    return batches

  def __call__(self, params) -> dict:
    """Metrics over the held-out examples, keys `eval_*`, and
    `eval_examples` (how many were evaluated)."""
    if self._batches is None:
      self._batches = self._read()
    batches = input_pipeline.global_batches(
        self._batches, sharding.batch_sharding(self._mesh))
    # Sums stay on the device until the end (no host sync per batch, so the
    # next batch is transferred while this one computes), then add in
    # float64.
    per_batch = jax.device_get([self._step(params, b) for b in batches])
    sums = {k: math.fsum(float(m[k]) for m in per_batch)
            for k in per_batch[0]}
    out = {f"eval_{k}": float(v) for k, v in
           losses.losses_from_sums(sums, maximum=max).items()}
    out["eval_examples"] = sums["nsp_count"]
    if "nsp_random_next" in sums:
      # Always guessing the commoner label: what NSP accuracy must beat.
      random_next = sums["nsp_random_next"] / max(sums["nsp_count"], 1.0)
      out["eval_nsp_majority"] = max(random_next, 1.0 - random_next)
    return out


class Clock:
  """The run's training wall time: since training started (compilation and
  checkpoint writes included), less held-out evaluation; a resumed run
  continues from its checkpoint's figure. `target`: the time-to-accuracy
  record, once reached."""

  def __init__(self, before: float = 0.0, target: dict | None = None):
    self._start, self._eval = time.perf_counter() - before, 0.0
    self.target = target

  def train_s(self) -> float:
    return time.perf_counter() - self._start - self._eval

  def evaluate(self, fn, state) -> dict:
    """`fn()`'s metrics, timed apart from training: the training steps
    dispatched so far finish first (`state` ready), so neither clock gets
    the other's time."""
    jax.block_until_ready(state)
    train_s, t = self.train_s(), time.perf_counter()
    ev = fn()
    spent = time.perf_counter() - t
    self._eval += spent
    ev.update(train_time_s=train_s, eval_time_s=spent)
    if "eval_examples" in ev:
      ev["eval_examples_per_s"] = ev["eval_examples"] / spent
    return ev


class Examples:
  """Training examples seen since the run began (a resumed run continues
  from its checkpoint's count): `global_batch_size` per unpacked step; for
  packed rows, the step's `sequences` metric, summed on the host only when
  read (a read waits for the steps dispatched so far)."""

  def __init__(self, before: int = 0):
    self._n, self._pending = before, []

  def add(self, per_step: int, metrics: dict) -> None:
    """One step: `per_step` examples, or (0) its `metrics["sequences"]`."""
    if per_step:
      self._n += per_step
    else:
      self._pending.append(metrics["sequences"])

  def read(self) -> int:
    if self._pending:
      self._n += int(round(sum(float(x) for x in
                               jax.device_get(self._pending))))
      self._pending = []
    return self._n


def check_target(target: float, entry: dict, clock: Clock, writer
                 ) -> dict | None:
  """MLPerf-style time to accuracy: the record of the first evaluation
  (`entry`: `history.History.add`'s) whose held-out MLM accuracy reaches
  `config.target_mlm_accuracy` (0: off), or None."""
  if not target or entry.get("eval_mlm_accuracy", 0.0) < target or (
      clock.target is not None):
    return None
  clock.target = reached = {
      "target": target, "step": entry["step"], "phase": entry["phase"],
      "examples": entry["examples"], "train_time_s": entry["train_time_s"],
      "mlm_accuracy": entry["eval_mlm_accuracy"]}
  writer.write_scalars(entry["step"], {
      "target_step": entry["step"], "target_examples": entry["examples"],
      "target_train_time_s": entry["train_time_s"]})
  logging.info("Reached target_mlm_accuracy=%g (held-out %.4f) at step %d, "
               "%s training examples, after %.1f s of training (evaluation "
               "excluded).", target, entry["eval_mlm_accuracy"], entry["step"],
               f"{entry['examples']:,}", entry["train_time_s"])
  return reached
