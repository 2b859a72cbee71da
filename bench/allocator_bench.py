r"""Train-step time under different host memory allocator settings.

    python -m bench.allocator_bench --size=tiny --settings=default,thp,tcmalloc
    python -m bench.allocator_bench --size=base --rounds=2 --steps=1

On CPU, XLA allocates each step's temporary buffers (hundreds of MB) afresh:
glibc serves them with `mmap` and returns them with `munmap`, so every step
faults in and the kernel zeroes the same memory again (85k page faults per
BERT-Tiny step, 1.5M per Base step, a quarter of the process's CPU time in
the kernel). The allocator is chosen when the process starts, so every
setting runs in fresh child processes, round-robin (the order alternates),
each round after the machine has gone quiet; the fastest round counts.

Settings:
  default   glibc malloc as configured by the system
  thp       GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc >= 2.35: malloc
            asks for transparent huge pages, 512x fewer faults)
  keep      GLIBC_TUNABLES: no mmap, no trimming
  keep1     the same and one arena (per-thread heaps are unmapped when empty)
  mallopt   keep1's setting applied in process by `bert_jax.allocator`, as
            the entry points do where tcmalloc is missing
  tcmalloc  LD_PRELOAD of libtcmalloc_minimal.so.4 (Debian/Ubuntu package
            libtcmalloc-minimal4), which keeps freed memory for reuse
  jemalloc  LD_PRELOAD of libjemalloc.so.2 (package libjemalloc2)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench import common

_PRELOAD = {"tcmalloc": "libtcmalloc_minimal.so.4",
            "jemalloc": "libjemalloc.so.2"}


def setting_env(name: str) -> dict | None:
  """Environment additions for a setting; None if its library is missing."""
  if name == "default":
    return {}
  if name == "thp":
    return {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  keep = ("glibc.malloc.mmap_max=0:"
          "glibc.malloc.trim_threshold=4611686018427387904")
  if name == "keep":  # glibc keeps freed memory: no mmap, no trimming
    return {"GLIBC_TUNABLES": keep}
  if name == "keep1":  # and one arena: thread heaps are never unmapped
    return {"GLIBC_TUNABLES": keep + ":glibc.malloc.arena_max=1"}
  if name == "mallopt":  # the same, set at run time by bert_jax.allocator
    return {"BERT_JAX_BENCH_MALLOPT": "1"}
  if name in _PRELOAD:
    from bert_jax import allocator  # pylint: disable=g-import-not-at-top
    for d in allocator.LIBRARY_DIRS:
      if os.path.exists(os.path.join(d, _PRELOAD[name])):
        return {"LD_PRELOAD": os.path.join(d, _PRELOAD[name])}
    return None
  raise ValueError(f"--settings: unknown setting {name!r}")


def child(size: str, seq: int, preds: int, batch: int, steps: int) -> dict:
  """Times `steps` steps after warm-up in this process; resource counts."""
  import resource  # pylint: disable=g-import-not-at-top
  if os.environ.get("BERT_JAX_BENCH_MALLOPT"):
    from bert_jax import allocator  # pylint: disable=g-import-not-at-top
    print(allocator.keep_freed_memory(), file=sys.stderr)
  import jax  # pylint: disable=g-import-not-at-top
  c = common.setup(size, seq, preds, batch)
  step, state, b = c["step"], c["state"], c["batch"]
  for _ in range(2):
    state, m = step(state, b)
  jax.block_until_ready(m)
  r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  meter = common.Meter().start()
  for _ in range(steps):
    state, m = step(state, b)
  jax.block_until_ready(m)
  wall = time.perf_counter() - t0
  other = meter.stop()
  r1 = resource.getrusage(resource.RUSAGE_SELF)
  user, sys_ = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
  return {"step_s": wall / steps,
          "faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
          "kernel_share": sys_ / max(user + sys_, 1e-9),
          "cores": (user + sys_) / wall, "peak_rss_mb": r1.ru_maxrss / 1024,
          "loss": float(m["loss"]), "other": other}


def run_child(env_add: dict, a, size: str) -> dict:
  cmd = [sys.executable, "-m", "bench.allocator_bench", "--child",
         f"--size={size}",
         f"--seq={a.seq}", f"--preds={a.preds}", f"--batch={a.batch}",
         f"--steps={a.steps}"]
  out = subprocess.run(cmd, env={**os.environ, **env_add}, check=True,
                       capture_output=True, text=True, cwd=common.ROOT).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_shape_args(p, "tiny")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--settings", default="default,thp,tcmalloc")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--max_other", type=float, default=0.25)
  p.add_argument("--quiet_timeout", type=float, default=60.0)
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.child:
    print(json.dumps(child(a.size, a.seq, a.preds, a.batch, a.steps)))
    return
  settings = {}
  for name in a.settings.split(","):
    env = setting_env(name)
    if env is None:
      print(f"{name}: library {_PRELOAD[name]} not found, skipped")
    else:
      settings[name] = env
  for size in a.size.split(","):
    runs = {n: [] for n in settings}
    for r in range(a.rounds):
      order = list(settings) if r % 2 == 0 else list(settings)[::-1]
      for name in order:
        common.wait(a.max_other, a.quiet_timeout)
        runs[name].append(run_child(settings[name], a, size))
    base = None
    print(f"\n{size}, seq {a.seq}, batch {a.batch}, {a.rounds} rounds x "
          f"{a.steps} steps (fastest clean round; all rounds if none clean)")
    print("| setting | best ms/step | median | speed-up | faults/step | "
          "kernel share | cores | peak RSS MB | clean rounds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
      clean = [x for x in rs if x["other"] < a.max_other] or rs
      best = min(clean, key=lambda x: x["step_s"])
      med = sorted(x["step_s"] for x in rs)[len(rs) // 2]
      base = base or best["step_s"]
      print(f"| {name} | {best['step_s']*1e3:,.0f} | {med*1e3:,.0f} | "
            f"{base / best['step_s']:.2f}x | {best['faults_per_step']:,.0f} | "
            f"{best['kernel_share']:.0%} | {best['cores']:.2f} | "
            f"{best['peak_rss_mb']:,.0f} | {len(clean)}/{len(rs)} |",
            flush=True)
    losses = {n: rs[0]["loss"] for n, rs in runs.items()}
    print("loss after the timed steps (must agree):", losses)


if __name__ == "__main__":
  main()
