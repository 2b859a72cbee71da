"""The lines a run starts and ends with: what it trains on, what it got.

`start` logs the model's size, every phase's shape and schedule and the
files and examples it reads (from `preflight.check`); `end` logs each
phase's held-out results, NSP accuracy beside the majority-class baseline it
must beat, where the checkpoint is, and the commands that come next.
"""

from __future__ import annotations

import os

from absl import logging
import jax
import numpy as np

from bert_jax import settings


def parameter_count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def start(s: settings.Settings, data: dict, params) -> None:
  m = s.model
  logging.info("Model: %s parameters (L=%d, H=%d, A=%d, feed-forward %d, "
               "vocab %d), %s.", f"{parameter_count(params):,}",
               m.num_hidden_layers, m.hidden_size, m.num_attention_heads,
               m.intermediate_size, m.vocab_size, m.dtype)
  if not m.nsp:
    logging.info("MLM only (model.nsp=False): no pooler, no NSP head or loss.")
  for p in s.phases:
    logging.info("%s: steps %d-%d, batch %d%s at seq %d (%d predictions), "
                 "%s schedule, peak rate %g, %d warm-up; %s.", p.name, p.start,
                 p.end, p.global_batch_size,
                 f" rows packed up to {p.packing}" if p.packing else "",
                 p.max_seq_length, p.max_predictions_per_seq, p.schedule,
                 p.learning_rate, p.warmup_steps, masking(p))
  for f in data.values():
    logging.info("%s: %d file(s), %s examples%s%s.", f.field, len(f.files),
                 "unknown" if f.examples is None else f"{f.examples:,}",
                 "" if f.vocab_size is None else f", vocab {f.vocab_size}",
                 "" if f.masked else ", no masks (data_prep --masking=none)")


def masking(p: settings.Phase) -> str:
  """How a phase's masks are made, in words."""
  if not p.dynamic:
    return "the shards' masks"
  kept = 1 - p.mask_token_prob - p.random_token_prob
  return (f"masks drawn each step at {p.mask_rate:g} "
          f"({p.mask_token_prob:.0%} [MASK] / {p.random_token_prob:.0%} random "
          f"/ {kept:.0%} kept{', whole words' if p.whole_word_masking else ''})")


def lines(result: dict, workdir: str, step: int | None) -> list[str]:
  """The closing summary of `train_and_evaluate`'s result."""
  out = []
  for name, ev in (result.get("eval_by_phase") or {}).items():
    line = (f"{name}: held-out MLM accuracy {ev['eval_mlm_accuracy']:.4f} "
            f"(loss {ev['eval_mlm_loss']:.3f})")
    if "eval_nsp_accuracy" in ev:
      line += f", NSP accuracy {ev['eval_nsp_accuracy']:.3f}"
    majority = ev.get("eval_nsp_majority")
    if majority is not None:
      line += f" against {majority:.3f} for always guessing the commoner label"
      if ev["eval_nsp_accuracy"] <= majority + 0.005:
        line += " (NSP has learned nothing yet)"
    out.append(line + f", {int(ev.get('eval_examples', 0)):,} examples.")
  if "target" in result:
    t = result["target"]
    out.append(f"Reached target_mlm_accuracy at step {t['step']} after "
               f"{t['train_time_s']:.0f} s of training.")
  if step is not None:
    out.append(f"Checkpoint: {os.path.join(workdir, 'checkpoints', str(step))}")
    out.append("Next: python -m bert_jax.convert export_hf "
               f"--workdir={workdir} --output_dir={workdir}/hf "
               "(--heads=mlm for BertForMaskedLM)")
    out.append(f"      python -m bert_jax.finetune --config.init_checkpoint="
               f"{workdir} --config.task_dir=... --config.output_dir=...")
  return out


def end(result: dict, workdir: str, step: int | None) -> None:
  for line in lines(result, workdir, step):
    logging.info("%s", line)
