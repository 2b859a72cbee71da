r"""Training-step throughput, model TFLOP/s and MFU.

    python bench/train_bench.py --size=tiny,mini,base --seq=128 --batch=32
    python bench/train_bench.py --size=base --seq=512 --preds=80 --batch=8

Times the jitted train step (LAMB, dropout on, gathered MLM head) on synthetic
batches of the given shape, after compilation and warm-up; the MFU
denominator is the f32 matmul peak measured in the same run (the fastest
`jnp.dot` over a 2048² product and BERT-Base's feed-forward shapes, with
XLA's default and, on CPU, oneDNN dots), so figures compare across machines.
With `--repeats=N` the step is timed N times (`--steps` steps each), each after the
machine has gone quiet (`quiet.py`), and the fastest counts. `--prng` picks
the dropout key's PRNG implementation (`config.dropout_prng`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import quiet  # pylint: disable=g-import-not-at-top
from bert_jax import flops  # pylint: disable=g-import-not-at-top
from bert_jax import models  # pylint: disable=g-import-not-at-top
from bert_jax import optim  # pylint: disable=g-import-not-at-top
from bert_jax import train  # pylint: disable=g-import-not-at-top
from bert_jax import xla_cpu  # pylint: disable=g-import-not-at-top
from configs import bert as bert_config  # pylint: disable=g-import-not-at-top


# Matmul shapes the peak is probed on: a square one and BERT-Base's
# feed-forward products at 4,096 tokens (the largest dots of the step).
PEAK_SHAPES = ((2048, 2048, 2048), (4096, 768, 3072), (4096, 3072, 768))


def best_seconds(fn, repeats: int) -> float:
  """Fastest of `repeats` timed calls of `fn` (which blocks until done),
  after one untimed warm-up call."""
  fn()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def matmul_peak(repeats: int = 10, dtype: str = "float32",
                shapes=PEAK_SHAPES) -> float:
  """Measured matmul TFLOP/s on the default device: the best over `shapes`
  (M, K, N) and, on CPU, over XLA's default dots and oneDNN's. bfloat16:
  inputs in bfloat16, products accumulated in float32, as the model does."""
  rng, best_rate = np.random.default_rng(0), 0.0
  libraries = [None]  # XLA's default; on CPU also oneDNN (`cpu_dots`)
  if jax.default_backend() == "cpu":
    libraries.append(xla_cpu.ONEDNN_DOTS)
  for m, k, n in shapes:
    x = jnp.asarray(rng.normal(size=(m, k)), dtype)
    y = jnp.asarray(rng.normal(size=(k, n)), dtype)
    for opts in libraries:
      f = jax.jit(lambda u, v: jnp.dot(
          u, v, preferred_element_type=jnp.float32), compiler_options=opts)
      t = best_seconds(lambda f=f: f(x, y).block_until_ready(), repeats)
      best_rate = max(best_rate, 2 * m * k * n / t / 1e12)
  return best_rate


def machine() -> str:
  """The CPU model, core count and matrix ISA: timings only compare on the
  same machine."""
  name, flags = "unknown CPU", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, val = line.partition(":")
        if key.strip() == "model name":
          name = val.strip()
        elif key.strip() == "flags":
          flags = set(val.split())
  except OSError:
    pass
  isa = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
         if x in flags]
  return f"{name}, {os.cpu_count()} CPUs, {'/'.join(isa) or 'no AVX2'}"


def add_shape_args(p, size: str) -> None:
  """The step-shape flags every step benchmark takes."""
  p.add_argument("--size", default=size, help="model size (configs/bert.py); a list where the "
                 "script loops over sizes")
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--preds", type=int, default=20)
  p.add_argument("--batch", type=int, default=32)


def synthetic_batch(cfg, seq: int, preds: int, batch: int) -> dict:
  rng = np.random.default_rng(0)
  b = {"input_ids": rng.integers(5, cfg.vocab_size, (batch, seq)),
       "input_mask": np.ones((batch, seq)),
       "segment_ids": (np.arange(seq)[None] >= seq // 2).repeat(batch, 0),
       "masked_lm_positions": np.sort(rng.integers(1, seq, (batch, preds)), 1),
       "masked_lm_ids": rng.integers(5, cfg.vocab_size, (batch, preds)),
       "masked_lm_weights": np.ones((batch, preds)),
       "next_sentence_labels": rng.integers(0, 2, (batch, 1))}
  return {k: jnp.asarray(v, jnp.float32 if k == "masked_lm_weights"
                         else jnp.int32) for k, v in b.items()}


def make_step(model, tx, prng: str = "default", mods=models):
  """`train.make_train_step(model, tx, 1, 0, prng=...)`; with `mods` (an
  older `bert_jax.models`, e.g. git HEAD's) from before the model took the
  labels (no `decoder_nll`), the same step computing its losses from the
  logits, as that version's trainer did."""
  prng = "threefry2x32" if prng == "default" else prng
  if mods is models or hasattr(mods, "decoder_nll"):  # the model takes labels
    return train.make_train_step(model, tx, 1, 0, prng=prng)

  def loss_fn(params, micro, rng):
    mlm, nsp = model.apply({"params": params}, micro["input_ids"],
                           micro["input_mask"], micro["segment_ids"],
                           micro["masked_lm_positions"], deterministic=False,
                           rngs={"dropout": rng})
    m = mods.pretraining_losses(mlm, nsp, micro["masked_lm_ids"],
                                micro["masked_lm_weights"],
                                micro["next_sentence_labels"])
    return m["loss"], m

  def train_step(state, batch):
    rng = jax.random.fold_in(train.dropout_key(0, prng), state["global_step"])
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state["params"], batch, rng)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return {"params": params, "opt_state": opt_state,
            "global_step": state["global_step"] + 1}, metrics

  return train_step


def setup(size: str, seq: int, preds: int, batch: int, dtype: str = "float32",
          prng: str = "default", mods=models, cpu_dots: str = "auto",
          **model_overrides) -> dict:
  """Model, state, jitted step and a synthetic batch (`mods`: the version of
  `bert_jax.models` to use; `cpu_dots`: as `config.cpu_dots`)."""
  c = bert_config.get_config(size)
  c.model.dtype = dtype
  cfg = mods.BertConfig(**{**c.model.to_dict(), **model_overrides})
  model = mods.BertForPreTraining(cfg)
  b = synthetic_batch(cfg, seq, preds, batch)
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  params = nn.unbox(model.init(jax.random.PRNGKey(0), b["input_ids"],
                               b["input_mask"], b["segment_ids"],
                               b["masked_lm_positions"])["params"])
  tx = optim.lamb(optim.google_schedule(1e-4, 10, 1000))
  state = {"params": params, "opt_state": tx.init(params),
           "global_step": jnp.asarray(0, jnp.int32)}
  opts = xla_cpu.compiler_options(cpu_dots, cfg.hidden_size,
                                  jax.default_backend())
  step = jax.jit(make_step(model, tx, prng, mods), donate_argnums=0,
                 compiler_options=opts)
  return {"cfg": cfg, "model": model, "state": state, "step": step,
          "batch": b}


def bench(size: str, seq: int, preds: int, batch: int, steps: int,
          dtype: str, prng: str = "default", repeats: int = 1,
          max_other: float = 0.25, quiet_timeout: float = 60.0) -> dict:
  """Fastest of `repeats` timings of `steps` steps each, after warm-up."""
  c = setup(size, seq, preds, batch, dtype, prng)
  step, state, b, cfg = c["step"], c["state"], c["batch"], c["cfg"]
  for _ in range(2):  # compile + warm up
    state, m = step(state, b)
  jax.block_until_ready(m)
  dt = float("inf")
  for _ in range(repeats):
    if repeats > 1:
      quiet.wait(max_other, quiet_timeout)
    t = time.perf_counter()
    for _ in range(steps):
      state, m = step(state, b)
    jax.block_until_ready(m)
    dt = min(dt, (time.perf_counter() - t) / steps)
  fl = flops.training_flops_per_sequence(cfg, seq, preds) * batch
  return {"size": size, "seq": seq, "batch": batch, "step_s": dt,
          "seq_per_s": batch / dt, "tflops": fl / dt / 1e12}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_shape_args(p, "tiny,mini,base")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--prng", default="default",
                 help="dropout key PRNG: default (the trainer's) | rbg | "
                 "unsafe_rbg | threefry2x32")
  p.add_argument("--repeats", type=int, default=1,
                 help="timed passes of --steps steps; the fastest counts")
  p.add_argument("--max_other", type=float, default=0.25)
  p.add_argument("--quiet_timeout", type=float, default=60.0)
  a = p.parse_args()
  print(machine())
  quiet.wait(a.max_other, a.quiet_timeout)
  peak = matmul_peak(dtype=a.dtype)
  print(f"{jax.devices()[0].platform} x{jax.device_count()}: measured "
        f"{a.dtype} matmul peak {peak:.3f} TFLOP/s")
  for size in a.size.split(","):
    r = bench(size, a.seq, a.preds, a.batch, a.steps, a.dtype, a.prng,
              a.repeats, a.max_other, a.quiet_timeout)
    print(f"{size:>6} seq {r['seq']} batch {r['batch']}: {r['step_s']*1e3:8.1f}"
          f" ms/step, {r['seq_per_s']:8.1f} seq/s, {r['tflops']:.3f} TFLOP/s, "
          f"MFU {r['tflops'] / peak:.2f}", flush=True)


if __name__ == "__main__":
  main()
