r"""Where the train step's time goes: per-op CPU profile, grouped by role.

    python -m bench.profile_step --size=base --seq=128 --batch=32 --preds=20
    python -m bench.profile_step --size=tiny --top=30 --save=/tmp/tiny.json

Runs the train step of `common.setup` under `jax.profiler.trace`, reads the
trace's per-thunk durations, and maps each executed fusion back to the JAX
operation it came from (the `op_name` metadata of the compiled HLO). Groups:
matmuls (YNN/oneDNN/XLA dot fusions), dropout RNG (threefry bits), softmax,
LayerNorm, GELU, the MLM loss, the optimizer update (everything outside the
forward/backward pass), and the rest. Times are per step, summed over the
executed thunks; XLA runs independent thunks concurrently on the 2 cores, so
the sum can exceed the wall time and concurrent thunks each look slower than
they would alone: use it to rank, and A/B changes with `step_variants.py`.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax

from bench import common


def hlo_index(text: str) -> dict[str, tuple[str, str]]:
  """instruction name → (op_name metadata, its line) of the optimized HLO."""
  out = {}
  for line in text.splitlines():
    m = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = ", line)
    if not m:
      continue
    op = re.search(r'op_name="([^"]*)"', line)
    out[m.group(1)] = (op.group(1) if op else "", line.strip())
  return out


def category(name: str, op_name: str, line: str) -> str:
  del line
  o = op_name
  if "threefry" in o or "random_bits" in o or "_bernoulli" in o or (
      "_uniform" in o) or "rng_bit_generator" in o:
    return "dropout RNG"
  if name.startswith(("ynn_fusion", "xnn_fusion", "onednn")) or (
      name.startswith("dot")):
    if "dot_general" not in o and "reduce" in o:
      return "reductions (YNN)"
    if "cls_predictions" in o:
      return "MLM decoder matmuls"
    return "encoder/pooler matmuls"
  if "cls_predictions" in o and "reduce_sum" in o:
    return "MLM loss / logits (V-sized)"
  if ("log_softmax" in o or "take_along_axis" in o or "argmax" in o or
      "jvp()" in o or "jvp(jit(_where))" in o or
      ("cls_predictions" in o and "bph,vh" in o) or
      "cls_predictions/add" in o):
    return "MLM loss / logits (V-sized)"
  if "softmax" in o or "reduce_max" in o:
    return "attention softmax"
  if "Dropout" in o:
    return "dropout apply"
  if "LayerNorm" in o:
    return "LayerNorm"
  if "gelu" in o or "tanh" in o or "intermediate" in o:
    return "GELU"
  if "BertForPreTraining" not in o:
    return "optimizer / grad norm / other"
  if "transpose" in name or "copy" in name:
    return "copies / transposes"
  return "other fwd/bwd elementwise"


def run(a) -> None:
  c = common.setup(a.size, a.seq, a.preds, a.batch, a.dtype, a.prng)
  step, state, b = c["step"], c["state"], c["batch"]
  compiled = step.lower(state, b).compile()
  index = hlo_index(compiled.as_text())
  for _ in range(2):
    state, m = compiled(state, b)
  jax.block_until_ready(m)
  common.wait(0.25, a.quiet_timeout)
  t = time.perf_counter()
  for _ in range(a.steps):
    state, m = compiled(state, b)
  jax.block_until_ready(m)
  wall = (time.perf_counter() - t) / a.steps
  d = tempfile.mkdtemp(prefix="bert_prof_")
  common.wait(0.25, a.quiet_timeout)
  t = time.perf_counter()
  with jax.profiler.trace(d):
    for _ in range(a.steps):
      state, m = compiled(state, b)
    jax.block_until_ready(m)
  traced_wall = (time.perf_counter() - t) / a.steps
  path = glob.glob(os.path.join(d, "plugins/profile/*/*.trace.json.gz"))[0]
  events = json.load(gzip.open(path))["traceEvents"]
  per_op = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e["name"] in index:
      per_op[e["name"]] += e.get("dur", 0) / 1e3 / a.steps
  if a.save:
    with open(a.save, "w") as f:
      json.dump({"wall_ms": wall * 1e3, "ops": {
          n: [ms, *index[n]] for n, ms in per_op.items()}}, f)
  groups = collections.Counter()
  for n, ms in per_op.items():
    groups[category(n, *index[n])] += ms
  total = sum(per_op.values())
  print(f"{a.size} seq {a.seq} batch {a.batch} preds {a.preds}: wall "
        f"{wall * 1e3:.0f} ms/step untraced, {traced_wall * 1e3:.0f} traced; "
        f"summed op time {total:.0f} ms/step")
  for g, ms in groups.most_common():
    print(f"  {ms:9.1f} ms  {100 * ms / total:5.1f}%  {g}")
  print(f"top {a.top} ops:")
  _top(per_op, index, a.top, lambda n: True)
  print(f"top {a.top} ops other than matmuls:")
  _top(per_op, index, a.top, lambda n: "matmul" not in category(n, *index[n]))


def _top(per_op, index, k, keep) -> None:
  for n, ms in [x for x in per_op.most_common() if keep(x[0])][:k]:
    op, line = index[n]
    shape = re.search(r"= ([^ ]+) ", line)
    print(f"  {ms:8.1f} ms  {n:32s} {shape.group(1) if shape else '':28s} "
          f"{op[:110]}")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_shape_args(p, "base")
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--top", type=int, default=25)
  p.add_argument("--prng", default="default")
  p.add_argument("--quiet_timeout", type=float, default=60.0)
  p.add_argument("--save", default="", help="write per-op times (JSON) here")
  run(p.parse_args())


if __name__ == "__main__":
  main()
