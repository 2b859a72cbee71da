r"""A/B timing of train-step variants in one process, interleaved.

    python -m bench.step_variants --size=base --variants=head,base,rbg
    python -m bench.step_variants --size=tiny --rounds=5 --steps=3

On a shared, noisy machine, timings taken minutes apart in separate processes
differ by more than the effects measured here. This compiles every variant of
the same step up front, then times them round-robin (`--rounds` rounds of
`--steps` steps each; the order alternates between rounds) and reports each
variant's fastest round, so every variant sees the same conditions. Each
round first waits (up to `--quiet_timeout` s) for other processes to go quiet,
and a round during which they used more than `--max_other` cores does not
count (the table says how many rounds were clean; with none, all count).

A variant is `+`-joined tokens:
  base          train_step.make_train_step as the trainer builds it (threefry,
                `config.cpu_dots=auto`: oneDNN only where its probe passed)
  ynn           `cpu_dots=ynn`: XLA:CPU's default dot library (YNNPACK)
  onednn_dots   `xla_cpu.ONEDNN_DOTS` (oneDNN dots, YNNPACK reductions)
                applied directly, without the probe: what `cpu_dots=onednn`
                gives where the probe passes (this train step may compile
                where the probe's other computations crash)
  head          bert_jax/models.py as committed at --head_rev (default git
                HEAD) instead of the working tree's: model and losses, losses
                from the logits (for before/after tables)
  rbg / unsafe_rbg / threefry   the dropout key's `jax.random` implementation
  bits16        model.dropout_bits=16 (models.Dropout16: four keep decisions
                per threefry block)
  (the tokens below set XLA:CPU options on top of XLA's defaults, i.e.
  of `cpu_dots=ynn`)
  xla_reduce    YNN only for dots: reductions by XLA's own emitter
  xla_dot       no YNN at all (XLA/Eigen dots)
  onednn        oneDNN dots instead of YNN
  vec512        xla_cpu_prefer_vector_width=512
  memsched / concsched   xla_cpu_scheduler_type MEMORY_ / CONCURRENCY_OPTIMIZED
  noconc        xla_cpu_enable_concurrency_optimized_scheduler=false
  ynn_eltwise   YNN fusions for dots, reductions and elementwise ops
Each variant prints its loss after two steps: identical numerics give the
same loss; other dropout PRNGs give different masks, hence other losses.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from bench import common
from bench import git_head
from bert_jax import flops
from bert_jax import models
from bert_jax import xla_cpu

_COMPILER = {
    "xla_reduce": {"xla_cpu_experimental_ynn_fusion_type":
                   "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
    "xla_dot": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "onednn": {"xla_cpu_experimental_ynn_fusion_type": "",
               "xla_cpu_use_onednn": True,
               "xla_cpu_experimental_onednn_fusion_type":
               "LIBRARY_FUSION_TYPE_DOT"},
    "vec512": {"xla_cpu_prefer_vector_width": 512},
    "memsched": {"xla_cpu_scheduler_type":
                 "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"},
    "concsched": {"xla_cpu_scheduler_type":
                  "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"},
    "noconc": {"xla_cpu_enable_concurrency_optimized_scheduler": False},
    "ynn_eltwise": {"xla_cpu_experimental_ynn_fusion_type":
                    "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE,"
                    "LIBRARY_FUSION_TYPE_REDUCE"},
}
_PRNG = {"rbg": "rbg", "unsafe_rbg": "unsafe_rbg", "threefry": "threefry2x32"}


def build(variant: str, a) -> dict:
  opts, prng, mods, over = {}, "default", models, {}
  dots = "auto"
  for tok in variant.split("+"):
    if tok == "base":
      continue
    if tok == "ynn":
      dots = "ynn"
      continue
    if tok == "onednn_dots":
      opts.update(xla_cpu.ONEDNN_DOTS)
      dots = "ynn"
      continue
    if tok == "bits16":
      over["dropout_bits"] = 16
    elif tok == "head":
      mods = git_head.module("bert_jax/models.py", a.head_rev)
    elif tok in _PRNG:
      prng = _PRNG[tok]
    elif tok in _COMPILER:
      opts.update(_COMPILER[tok])
      dots = "ynn"
    else:
      raise ValueError(f"unknown variant token {tok!r}")
  c = common.setup(a.size, a.seq, a.preds, a.batch, a.dtype, prng, mods,
                       cpu_dots=dots, **over)
  t = time.perf_counter()
  c["compiled"] = c["step"].lower(c["state"], c["batch"]).compile(
      compiler_options=opts or None)
  c["compile_s"] = time.perf_counter() - t
  state, m = c["compiled"](c["state"], c["batch"])
  state, m = c["compiled"](state, c["batch"])
  c["state"], c["loss"] = state, float(m["loss"])
  c["times"], c["all_times"] = [], []
  return c


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_shape_args(p, "tiny")
  p.add_argument("--dtype", default="float32")
  p.add_argument("--variants", default="head,base")
  p.add_argument("--head_rev", default="HEAD",
                 help="the git revision the `head` variant takes models.py from")
  p.add_argument("--rounds", type=int, default=4)
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--max_other", type=float, default=0.25,
                 help="a round counts only if other processes used fewer "
                 "cores than this meanwhile (see common.wait)")
  p.add_argument("--quiet_timeout", type=float, default=60.0,
                 help="seconds to wait for a quiet machine before a round")
  a = p.parse_args()
  names = a.variants.split(",")
  vs = {}
  for n in names:
    vs[n] = build(n, a)
    print(f"compiled {n} in {vs[n]['compile_s']:.1f} s; loss after 2 steps "
          f"{vs[n]['loss']:.5f}", flush=True)
  common.wait(a.max_other, a.quiet_timeout)
  peak = common.matmul_peak(dtype=a.dtype)
  for r in range(a.rounds):
    for n in (names if r % 2 == 0 else names[::-1]):
      c = vs[n]
      state = c["state"]
      common.wait(a.max_other, a.quiet_timeout)
      meter = common.Meter().start()
      t = time.perf_counter()
      for _ in range(a.steps):
        state, m = c["compiled"](state, c["batch"])
      jax.block_until_ready(m)
      dt = (time.perf_counter() - t) / a.steps
      other = meter.stop()
      c["all_times"].append(dt)
      if other < a.max_other:
        c["times"].append(dt)
      c["state"] = state
    common.wait(a.max_other, a.quiet_timeout)
    peak = max(peak, common.matmul_peak(repeats=3, dtype=a.dtype))
  cfg = vs[names[0]]["cfg"]
  fl = flops.training_flops_per_sequence(cfg, a.seq, a.preds) * a.batch
  base = min(vs[names[0]]["times"] or vs[names[0]]["all_times"])
  print(common.machine())
  print(f"{a.size} seq {a.seq} batch {a.batch} preds {a.preds}; matmul peak "
        f"(best seen) {peak:.3f} TFLOP/s; {a.rounds} rounds × {a.steps} steps")
  print(f"| variant | best ms/step | median ms/step | seq/s | MFU | speed vs "
        f"{names[0]} |")
  print("|---|---|---|---|---|---|")
  for n in names:
    t = vs[n]["times"] or vs[n]["all_times"]
    print(f"| {n} ({len(vs[n]['times'])}/{len(vs[n]['all_times'])} clean) | "
          f"{min(t) * 1e3:,.0f} | {np.median(t) * 1e3:,.0f} | "
          f"{a.batch / min(t):.2f} | {fl / min(t) / 1e12 / peak:.2f} | "
          f"{base / min(t):.2f}× |")


if __name__ == "__main__":
  main()
