"""Held-out evaluation: the forward-only step, a pass over the held-out
shards, and the run's clock for time to accuracy (MLPerf-style)."""

from __future__ import annotations

import time

from absl import logging
import jax

from bert_jax import input_pipeline
from bert_jax import models
from bert_jax import sharding


def packed_features(batch) -> dict:
  """The packed-row features of a batch (none for unpacked batches)."""
  return {k: batch[k] for k in ("position_ids", "pack_ids", "cls_positions")
          if k in batch}


def make_eval_step(model):
  """(params, batch) → Google's losses and accuracies, deterministic."""
  def eval_step(params, batch):
    mlm, nsp = model.apply({"params": params}, batch["input_ids"],
                           batch["input_mask"], batch["segment_ids"],
                           batch["masked_lm_positions"],
                           masked_lm_ids=batch["masked_lm_ids"],
                           **packed_features(batch))
    return models.pretraining_losses(mlm, nsp, batch["masked_lm_ids"],
                                     batch["masked_lm_weights"],
                                     batch["next_sentence_labels"],
                                     batch.get("nsp_weights"))
  return eval_step


def evaluate(eval_step, params, files, phase_cfg, config, mesh) -> dict:
  """Mean metrics over `config.eval_steps` held-out batches, keys `eval_*`."""
  spec = input_pipeline.DataSpec(files, phase_cfg.max_seq_length,
                                 phase_cfg.max_predictions_per_seq,
                                 config.eval_batch_size)
  ds = input_pipeline.host_dataset(spec, seed=0, training=False,
                                   streams=config.get("data_streams", -1))
  # Metrics stay on the device until the end (no host sync per batch, so
  # the next batch is read while this one computes); averaged in float64.
  batches = input_pipeline.global_batches(ds.take(config.eval_steps),
                                         sharding.batch_sharding(mesh))
  per_batch = jax.device_get([eval_step(params, b) for b in batches])
  n = max(len(per_batch), 1)
  return {f"eval_{k}": sum(float(m[k]) for m in per_batch) / n
          for k in (per_batch[0] if per_batch else {})}


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
    return ev


def check_target(target: float, step: int, ev: dict, clock: Clock,
                 writer) -> dict | None:
  """MLPerf-style time to accuracy: the first evaluation whose held-out MLM
  accuracy reaches `config.target_mlm_accuracy` (0: off)."""
  if not target or ev.get("eval_mlm_accuracy", 0.0) < target or (
      clock.target is not None):
    return None
  clock.target = reached = {
      "step": step, "train_time_s": ev["train_time_s"],
      "mlm_accuracy": ev["eval_mlm_accuracy"], "target": target}
  writer.write_scalars(step, {"target_step": step,
                              "target_train_time_s": ev["train_time_s"]})
  logging.info("Reached target_mlm_accuracy=%g (held-out %.4f) at step %d "
               "after %.1f s of training (evaluation excluded).", target,
               ev["eval_mlm_accuracy"], step, ev["train_time_s"])
  return reached
