r"""Training-step throughput, model TFLOP/s and MFU.

    python -m bench.train_bench --size=tiny,mini,base --seq=128 --batch=32
    python -m bench.train_bench --size=base --seq=512 --preds=80 --batch=8

Times the jitted train step (LAMB, dropout on, gathered MLM head) on synthetic
batches of the given shape, after compilation and warm-up; the MFU
denominator is the f32 matmul peak measured in the same run (the fastest
`jnp.dot` over a 2048² product and BERT-Base's feed-forward shapes, with
XLA's default and, on CPU, oneDNN dots), so figures compare across machines.
With `--repeats=N` the step is timed N times (`--steps` steps each), each after the
machine has gone quiet (`common.wait`), and the fastest counts. `--prng` picks
the dropout key's PRNG implementation (`config.dropout_prng`).
"""

from __future__ import annotations

import argparse
import time

import jax

from bench import common
from bert_jax import flops


def bench(size: str, seq: int, preds: int, batch: int, steps: int,
          dtype: str, prng: str = "default", repeats: int = 1,
          max_other: float = 0.25, quiet_timeout: float = 60.0) -> dict:
  """Fastest of `repeats` timings of `steps` steps each, after warm-up."""
  c = common.setup(size, seq, preds, batch, dtype, prng)
  step, state, b, cfg = c["step"], c["state"], c["batch"], c["cfg"]
  for _ in range(2):  # compile + warm up
    state, m = step(state, b)
  jax.block_until_ready(m)
  dt = float("inf")
  for _ in range(repeats):
    if repeats > 1:
      common.wait(max_other, quiet_timeout)
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
  common.add_shape_args(p, "tiny,mini,base")
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
  print(common.machine())
  common.wait(a.max_other, a.quiet_timeout)
  peak = common.matmul_peak(dtype=a.dtype)
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
