r"""Our train step against Hugging Face `BertForPreTraining` (PyTorch, CPU).

    python -m bench.hf_compare --size=tiny,base --seq=128 --preds=20 --batch=32
    python -m bench.hf_compare --size=base --seq=512 --preds=80 --batch=8

Both run in this one process on the same batch (same config, batch, sequence
length and masked positions), float32 (or both in bfloat16 mixed precision,
`--dtype=bfloat16`), dropout on, one optimizer update per step:

* ours: the jitted `train_step.make_train_step` exactly as the trainer builds it
  (LAMB with global-norm clipping, MLM head on the gathered positions); with
  `--ours_variants` also bench-local variants (`step_variants.py` tokens, e.g.
  `rbg` or `head`), as extra rows.
* HF: `transformers.BertForPreTraining` in train mode (its default attention
  implementation, SDPA; `gelu_new` = the tanh GELU we use), `labels` = the
  masked ids at the masked positions and -100 elsewhere, plus
  `next_sentence_label`; `loss.backward()`, `clip_grad_norm_(1.0)` (the HF
  Trainer's default) and `torch.optim.AdamW` (lr 1e-4, wd 0.01). As in HF's
  own pretraining, the MLM head (transform + 30,522-way decoder) runs on
  **all** B×T tokens and the -100 labels mask the loss.
* HF, head gathered (extra row, for reference): the same HF modules and
  optimizer, but the head applied only to the gathered masked positions
  (`model.bert` → gather → `model.cls`), which is what we do.

Both runners run under the host allocator bert_jax's entry points choose
(`bert_jax/allocator.py`: tcmalloc where installed, else glibc keeping freed
memory), as a user's job would; `BERT_JAX_ALLOCATOR=glibc` or `system` to
measure the others.

Timing: after warm-up the runners take turns (round-robin, `--rounds` rounds
of `--steps` steps, order alternating), each round waiting for the shared
machine to go quiet (`common.wait`); each runner's fastest clean round counts.
Torch uses as many threads as cores; XLA its default.

MFU = model FLOP/s ÷ the matmul peak measured in this run in the same dtype
(the best a JAX (YNNPACK or oneDNN dots) or torch f32 matmul reached over
the run, probed after every round on a 2048² product and BERT-Base's
feed-forward shapes). Model FLOPs (`bert_jax/flops.py`) count the
MLM head on the masked positions only, for every runner (apples to apples);
for HF the table also gives the FLOPs it actually executes, with the head on
every token ("exec MFU").
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from bench import common
from bench import step_variants
from bert_jax import allocator
from bert_jax import flops
from bert_jax import models
from configs import bert as bert_config


def make_batch(cfg, seq: int, preds: int, batch: int, seed: int = 0) -> dict:
  """Synthetic full-length batch; `preds` distinct masked positions a row."""
  rng = np.random.default_rng(seed)
  pos = np.stack([np.sort(rng.choice(np.arange(1, seq), preds, replace=False))
                  for _ in range(batch)])
  return {"input_ids": rng.integers(5, cfg.vocab_size, (batch, seq)),
          "input_mask": np.ones((batch, seq), np.int64),
          "segment_ids": (np.arange(seq)[None] >= seq // 2).repeat(batch, 0),
          "masked_lm_positions": pos,
          "masked_lm_ids": rng.integers(5, cfg.vocab_size, (batch, preds)),
          "masked_lm_weights": np.ones((batch, preds), np.float32),
          "next_sentence_labels": rng.integers(0, 2, (batch, 1))}


def torch_peak(repeats: int = 10, dtype: str = "float32") -> float:
  """torch's matmul TFLOP/s: best over common.PEAK_SHAPES."""
  best_rate = 0.0
  for m, k, n in common.PEAK_SHAPES:
    x = torch.randn(m, k).to(getattr(torch, dtype))
    y = torch.randn(k, n).to(getattr(torch, dtype))
    t = common.best_seconds(lambda x=x, y=y: x @ y, repeats)
    best_rate = max(best_rate, 2 * m * k * n / t / 1e12)
  return best_rate


class Ours:
  """Our jitted train step (as the trainer builds it, or a bench variant)."""

  def __init__(self, size, seq, preds, batch, np_batch, variant="base",
               dtype="float32"):
    a = argparse.Namespace(size=size, seq=seq, preds=preds, batch=batch,
                           dtype=dtype)
    c = step_variants.build(variant, a)
    self.cfg = c["cfg"]
    self.batch = {k: jnp.asarray(v, jnp.float32 if k == "masked_lm_weights"
                                 else jnp.int32) for k, v in np_batch.items()}
    self.step, self.state = c["compiled"], c["state"]
    self.run(1)

  def run(self, steps: int) -> float:
    for _ in range(steps):
      self.state, m = self.step(self.state, self.batch)
    return float(jax.block_until_ready(m["loss"]))


class HF:
  """transformers.BertForPreTraining + AdamW, head on all tokens or gathered."""

  def __init__(self, cfg, np_batch, gathered: bool, dtype="float32"):
    torch.manual_seed(0)
    self.autocast = dtype == "bfloat16"
    hf_cfg = transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act={"gelu": "gelu_new", "gelu_exact": "gelu"}[cfg.hidden_act],
        hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.initializer_range)
    self.model = transformers.BertForPreTraining(hf_cfg).train()
    self.gathered = gathered
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4,
                                 weight_decay=0.01)
    b = {k: torch.as_tensor(np.asarray(v)) for k, v in np_batch.items()}
    self.ids, self.mask = b["input_ids"].long(), b["input_mask"].long()
    self.seg = b["segment_ids"].long()
    self.pos = b["masked_lm_positions"].long()
    self.mlm_ids = b["masked_lm_ids"].long()
    self.nsp = b["next_sentence_labels"].reshape(-1).long()
    labels = torch.full_like(self.ids, -100)
    labels.scatter_(1, self.pos, self.mlm_ids)
    self.labels = labels
    self.run(1)

  def loss(self):
    if not self.gathered:
      return self.model(input_ids=self.ids, attention_mask=self.mask,
                        token_type_ids=self.seg, labels=self.labels,
                        next_sentence_label=self.nsp).loss
    seq, pooled = self.model.bert(input_ids=self.ids, attention_mask=self.mask,
                                  token_type_ids=self.seg, return_dict=False)
    idx = self.pos[..., None].expand(-1, -1, seq.shape[-1])
    mlm, nsp = self.model.cls(torch.gather(seq, 1, idx), pooled)
    ce = torch.nn.functional.cross_entropy
    return ce(mlm.reshape(-1, mlm.shape[-1]), self.mlm_ids.reshape(-1)) + ce(
        nsp, self.nsp)

  def run(self, steps: int) -> float:
    for _ in range(steps):
      self.opt.zero_grad(set_to_none=True)
      with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
        loss = self.loss()
      loss.backward()
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
      self.opt.step()
    return float(loss.detach())


def compare(size, seq, preds, batch, a) -> list[dict]:
  c = bert_config.get_config(size)
  cfg = models.BertConfig(**c.model.to_dict())
  nb = make_batch(cfg, seq, preds, batch)
  d = a.dtype
  runners = {"ours": Ours(size, seq, preds, batch, nb, dtype=d)}
  for v in filter(None, a.ours_variants.split(",")):
    runners[f"ours: {v}"] = Ours(size, seq, preds, batch, nb, v, d)
  runners["HF (head on all tokens)"] = HF(cfg, nb, gathered=False, dtype=d)
  if a.hf_gathered:
    runners["HF, head gathered"] = HF(cfg, nb, gathered=True, dtype=d)
  times = {k: [] for k in runners}
  all_times = {k: [] for k in runners}
  names = list(runners)
  peak_j = peak_t = 0.0
  for r in range(a.rounds):
    for n in names if r % 2 == 0 else names[::-1]:
      common.wait(a.max_other, a.quiet_timeout)
      m = common.Meter().start()
      t = time.perf_counter()
      runners[n].run(a.steps)
      dt = (time.perf_counter() - t) / a.steps
      all_times[n].append(dt)
      if m.stop() < a.max_other:
        times[n].append(dt)
    # The peaks: best seen over the run (a probe on a busy moment is low).
    common.wait(a.max_other, a.quiet_timeout)
    peak_j = max(peak_j, common.matmul_peak(repeats=5, dtype=a.dtype))
    peak_t = max(peak_t, torch_peak(repeats=5, dtype=a.dtype))
  peak = max(peak_j, peak_t)
  model_fl = flops.training_flops_per_sequence(cfg, seq, preds) * batch
  exec_fl = flops.training_flops_per_sequence(cfg, seq, seq) * batch
  rows = []
  ours_t = min(times["ours"] or all_times["ours"])
  for n in names:
    t = min(times[n] or all_times[n])
    row = {"size": size, "seq": seq, "batch": batch, "preds": preds,
           "runner": n, "step_s": t, "seq_per_s": batch / t,
           "mfu": model_fl / t / 1e12 / peak, "clean": len(times[n]),
           "rounds": len(all_times[n]), "ours_speedup": t / ours_t,
           "peak_jax": peak_j, "peak_torch": peak_t}
    if n.startswith("HF") and "gathered" not in n:
      row["exec_mfu"] = exec_fl / t / 1e12 / peak
    rows.append(row)
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_shape_args(p, "tiny,base")
  p.add_argument("--dtype", default="float32",
                 help="float32, or bfloat16: ours with model.dtype=bfloat16 "
                 "(fp32 params), HF under torch.autocast(bfloat16); MFU then "
                 "against the bf16 matmul peak")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=1)
  p.add_argument("--ours_variants", default="",
                 help="extra rows: step_variants tokens, e.g. head,rbg")
  p.add_argument("--hf_gathered", type=int, default=1,
                 help="also time HF with the head on gathered positions")
  p.add_argument("--max_other", type=float, default=0.25)
  p.add_argument("--quiet_timeout", type=float, default=60.0)
  a = p.parse_args()
  # Both runners under what bert_jax's entry points choose for a user (may
  # restart this process with tcmalloc; BERT_JAX_ALLOCATOR to choose).
  print(f"host allocator: {allocator.choose()}", flush=True)
  torch.set_num_threads(os.cpu_count())
  print(common.machine())
  print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, jax {jax.__version__}")
  print("| model | seq | batch | preds | runner | ms/step | seq/s | ours' "
        "speed-up over it | MFU (model FLOPs) | exec MFU (full head) | clean "
        "rounds |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for size in a.size.split(","):
    rows = compare(size, a.seq, a.preds, a.batch, a)
    for r in rows:
      ex = f"{r['exec_mfu']:.2f}" if "exec_mfu" in r else "–"
      print(f"| {r['size']} | {r['seq']} | {r['batch']} | {r['preds']} | "
            f"{r['runner']} | {r['step_s'] * 1e3:,.0f} | {r['seq_per_s']:.2f} "
            f"| {r['ours_speedup']:.2f}× | {r['mfu']:.2f} | {ex} | "
            f"{r['clean']}/{r['rounds']} |", flush=True)
    print(f"  (matmul peak: jax {rows[0]['peak_jax']:.3f}, torch "
          f"{rows[0]['peak_torch']:.3f} TFLOP/s; MFU uses the larger)",
          flush=True)


if __name__ == "__main__":
  main()
