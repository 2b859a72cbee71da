r"""Cost of dynamic masking (`bert_jax.dynamic_masking.draw`) per batch.

    python -m bench.masking_bench --shapes=256x128x20,64x512x80 --repeats=5

Times the jitted draw on random token rows of each BATCHxSEQxPREDICTIONS
shape, token-level and whole-word (half the pieces "##" continuations), after
compilation; the fastest of `--repeats` runs counts. Compare the figures with
a train step of the same shape (`python -m bench.train_bench`).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from bench import common
from bert_jax import dynamic_masking as dm

VOCAB, CLS, SEP, MASK = 30522, 101, 102, 103


def _rows(b: int, s: int, rng) -> tuple[np.ndarray, np.ndarray]:
  ids = rng.integers(1000, VOCAB, (b, s)).astype(np.int32)
  lengths = rng.integers(s // 2, s + 1, b)
  mask = (np.arange(s)[None, :] < lengths[:, None]).astype(np.int32)
  ids[:, 0] = CLS
  ids[np.arange(b), lengths - 1] = SEP
  return ids * mask, mask


def bench(b: int, s: int, p: int, whole_word: bool, repeats: int) -> float:
  rng = np.random.default_rng(0)
  ids, mask = _rows(b, s, rng)
  cont = np.zeros(VOCAB, bool)
  cont[VOCAB // 2:] = True
  spec = dm.MaskSpec(max_predictions=p, vocab_size=VOCAB, mask_id=MASK,
                     special_ids=(0, CLS, SEP, MASK), whole_word=whole_word)
  f = jax.jit(lambda k, i, m: dm.draw(k, i, m, spec, cont))
  ids, mask = jax.device_put(ids), jax.device_put(mask)
  jax.block_until_ready(f(jax.random.PRNGKey(0), ids, mask))
  keys = [jax.random.PRNGKey(i) for i in range(10)]

  def run():
    for k in keys:
      out = f(k, ids, mask)
    jax.block_until_ready(out)
  return common.best_seconds(run, repeats) / len(keys)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--shapes", default="256x128x20,64x512x80")
  p.add_argument("--repeats", type=int, default=5)
  a = p.parse_args()
  print(f"machine: {common.machine()}")
  for shape in a.shapes.split(","):
    b, s, preds = map(int, shape.split("x"))
    for ww in (False, True):
      ms = 1e3 * bench(b, s, preds, ww, a.repeats)
      print(f"batch {b} x seq {s}, {preds} predictions, "
            f"{'whole-word' if ww else 'token'}: {ms:.2f} ms per batch")


if __name__ == "__main__":
  main()
