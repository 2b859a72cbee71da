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

On an accelerator (`bench/device_check.sh`): `--attention=cudnn,xla` times
each attention implementation (`model.attention`), and `--peak_tflops=auto`
takes the chip's published dense peak for `--dtype` (H100/H200 bf16: 989
TFLOP/s) instead of the measured one as the MFU denominator; a number sets it.
"""

from __future__ import annotations

import argparse
import time

import jax

from bench import common
from bert_jax import flops


# Published dense peaks per chip (TFLOP/s), by a substring of device_kind.
PEAKS = {"bfloat16": (("H100", 989.0), ("H200", 989.0), ("A100", 312.0),
                      ("L4", 121.0), ("TPU v4", 275.0), ("TPU v5 lite", 197.0),
                      ("TPU v5p", 459.0), ("TPU v6", 918.0)),
         "float32": (("H100", 67.0), ("H200", 67.0), ("A100", 19.5))}


def published_peak(dtype: str) -> float | None:
  kind = jax.devices()[0].device_kind
  return next((v for k, v in PEAKS.get(dtype, ()) if k in kind), None)


def bench(size: str, seq: int, preds: int, batch: int, steps: int,
          dtype: str, prng: str = "default", repeats: int = 1,
          max_other: float = 0.25, quiet_timeout: float = 60.0,
          **model) -> dict:
  """Fastest of `repeats` timings of `steps` steps each, after warm-up;
  `model`: BertConfig overrides (e.g. attention="cudnn")."""
  c = common.setup(size, seq, preds, batch, dtype, prng, **model)
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
          "seq_per_s": batch / dt, "tokens_per_s": batch * seq / dt,
          "tflops": fl / dt / 1e12}


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
  p.add_argument("--attention", default="",
                 help="model.attention values to time, e.g. cudnn,xla "
                 "(default: the config's)")
  p.add_argument("--peak_tflops", default="",
                 help="MFU denominator: auto (the chip's published peak), a "
                 "number, or empty (measured)")
  p.add_argument("--max_other", type=float, default=0.25)
  p.add_argument("--quiet_timeout", type=float, default=60.0)
  a = p.parse_args()
  print(common.machine())
  common.wait(a.max_other, a.quiet_timeout)
  measured = common.matmul_peak(dtype=a.dtype)
  print(f"{jax.devices()[0].platform} x{jax.device_count()} "
        f"({jax.devices()[0].device_kind}): measured {a.dtype} matmul peak "
        f"{measured:.3f} TFLOP/s")
  peak, what = measured, "measured"
  if a.peak_tflops == "auto":
    published = published_peak(a.dtype)
    if published is None:
      print(f"no published {a.dtype} peak for this chip: MFU against the "
            "measured one")
    else:
      peak, what = published, "published"
  elif a.peak_tflops:
    peak, what = float(a.peak_tflops), "given"
  print(f"MFU against the {what} peak, {peak:.1f} TFLOP/s per device")
  for size in a.size.split(","):
    for attention in a.attention.split(",") if a.attention else [None]:
      model = {"attention": attention} if attention else {}
      r = bench(size, a.seq, a.preds, a.batch, a.steps, a.dtype, a.prng,
                a.repeats, a.max_other, a.quiet_timeout, **model)
      print(f"{size:>6} seq {r['seq']} batch {r['batch']}"
            f"{' ' + attention if attention else ''}: "
            f"{r['step_s']*1e3:8.1f} ms/step, {r['seq_per_s']:8.1f} seq/s, "
            f"{r['tokens_per_s']:10.0f} tokens/s, {r['tflops']:.3f} TFLOP/s, "
            f"MFU {r['tflops'] / peak:.3f}", flush=True)


if __name__ == "__main__":
  main()
