r"""Matmul throughput of XLA:CPU's dot libraries against PyTorch's, per shape.

    python -m bench.matmul_bench
    python -m bench.matmul_bench --shapes=2048x2048x2048,4096x768x3072 --dtypes=float32
    python -m bench.matmul_bench --shapes=4096x768x3072,4096x3072x768 \
        --layouts=nn,nt,tn --dtypes=float32

For each M×K×N shape (defaults: the 2048² peak probe and BERT-Base's
feed-forward matmuls at batch 32 × seq 128) and dtype, times `jnp.dot` compiled
with each XLA:CPU dot back end (`ynn`: XLA's default YNNPACK fusions; `eigen`:
XLA's own/Eigen dots; `onednn`: oneDNN dots) and `torch.matmul` (MKL/oneDNN),
best of `--repeats`. `bfloat16` returns bf16, `bfloat16>float32` asks for
f32 products (`preferred_element_type`); torch's bf16 matmul returns bf16. This is the ceiling the train step's
matmuls can reach in each framework on this machine.

`--layouts` picks how the operands lie in memory, as a Dense layer's three
products do: `nn` x[M,K]·w[K,N] (forward), `nt` dy[M,K]·w[N,K]ᵀ (input
gradient), `tn` x[K,M]ᵀ·dy[K,N] (kernel gradient, contracting the rows).
"""

from __future__ import annotations

import argparse

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import torch

from bench import common

BACKENDS = {
    "ynn": None,
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "onednn": {"xla_cpu_experimental_ynn_fusion_type": "",
               "xla_cpu_use_onednn": True,
               "xla_cpu_experimental_onednn_fusion_type":
               "LIBRARY_FUSION_TYPE_DOT"},
}

# layout → (lhs shape, rhs shape, contracting dims) for an M×K×N product.
LAYOUTS = {
    "nn": (lambda m, k, n: ((m, k), (k, n)), ((1,), (0,))),
    "nt": (lambda m, k, n: ((m, k), (n, k)), ((1,), (1,))),
    "tn": (lambda m, k, n: ((k, m), (k, n)), ((0,), (0,))),
}


def _torch_product(tx, ty, layout: str):
  if layout == "nt":
    return lambda: tx @ ty.T
  if layout == "tn":
    return lambda: tx.T @ ty
  return lambda: tx @ ty


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--shapes", default="2048x2048x2048,4096x768x3072,"
                 "4096x3072x768")
  p.add_argument("--dtypes", default="float32,bfloat16,bfloat16>float32",
                 help="input dtype, or in>out for products accumulated and "
                 "returned in `out` (preferred_element_type)")
  p.add_argument("--layouts", default="nn",
                 help="comma-separated: nn, nt, tn (see above)")
  p.add_argument("--repeats", type=int, default=5)
  a = p.parse_args()
  print(common.machine())
  print(f"jax {jax.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); GFLOP/s, best of {a.repeats}")
  print("| M×K×N | layout | dtype | " +
        " | ".join(f"XLA {b}" for b in BACKENDS) + " | torch |")
  print("|---|---|---|" + "---|" * (len(BACKENDS) + 1))
  rng = np.random.default_rng(0)
  for shape in a.shapes.split(","):
    m, k, n = (int(x) for x in shape.split("x"))
    flop = 2 * m * k * n
    for layout in a.layouts.split(","):
      shapes, contract = LAYOUTS[layout]
      xs, ys = shapes(m, k, n)
      for spec in a.dtypes.split(","):
        dtype, _, out = spec.partition(">")
        x = jnp.asarray(rng.random(xs), dtype)
        y = jnp.asarray(rng.random(ys), dtype)
        row = []
        for opts in BACKENDS.values():
          try:
            f = jax.jit(lambda u, v, c=contract: lax.dot_general(
                u, v, (c, ((), ())), preferred_element_type=out or None)
                        ).lower(x, y).compile(compiler_options=opts)
            f(x, y).block_until_ready()
            t = common.best_seconds(
                lambda f=f: f(x, y).block_until_ready(), a.repeats)
            row.append(f"{flop / t / 1e9:,.0f}")
          except Exception as e:  # pylint: disable=broad-except
            row.append(f"n/a ({type(e).__name__})")
        tx = torch.tensor(np.asarray(x, np.float32)).to(getattr(torch, dtype))
        ty = torch.tensor(np.asarray(y, np.float32)).to(getattr(torch, dtype))
        t = common.best_seconds(_torch_product(tx, ty, layout),
                                     a.repeats)
        print(f"| {shape} | {layout} | {spec} | " + " | ".join(row) +
              f" | {flop / t / 1e9:,.0f} |", flush=True)  # torch: out = in


if __name__ == "__main__":
  main()
