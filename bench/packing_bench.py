r"""Sequence packing: how much padding it recovers, what it costs, what it buys.

    python -m bench.packing_bench --corpus_mb=3 --seqs=128,512 --packing=2,3 \
        --train_size=mini --train_steps=12

Shards: `common.make_shards` (the harvested default corpus, the real
30,522-entry uncased vocab, dupe factor 5) at each `--seqs` length (20 / 80
predictions), in `--work_dir`. For each length and packing level K (0 = off):

* packing: examples per row and the share of row slots that are real tokens,
  over `--batches` batches of `--batch` rows of the trainer's stream
  (`input_pipeline.packed_batches`, or `host_dataset` unpacked);
* input speed: examples/s and rows/s out of that stream (best of
  `--repeats` passes, each on a quiet machine, `common.wait`);
* training (first length only, with `--train_steps`): `train_and_evaluate`
  on the same shards with the `--train_size` model, batch `--train_batch`
  rows, one CPU device; the examples/s it logs over the steps after the
  first `log_every`, i.e. what a user sees.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


from bench import common
from bert_jax import input_pipeline

PREDS = {128: 20, 512: 80}


def stream(spec, k):
  if k:
    return input_pipeline.packed_batches(spec, 0, k, process_index=0,
                                         process_count=1)
  return input_pipeline.host_dataset(spec, 0, process_index=0,
                                     process_count=1).as_numpy_iterator()


def measure_input(spec, k, batches, repeats, warmup=5):
  """(examples per row, real-token share, best examples/s, best rows/s)."""
  best, stats = (0.0, 0.0), None
  for _ in range(repeats):
    it = stream(spec, k)
    for _ in range(warmup):
      next(it)
    common.wait(0.25, 60)
    t, ex, real, rows = time.perf_counter(), 0.0, 0, 0
    for _ in range(batches):
      b = next(it)
      rows += len(b["input_ids"])
      ex += float(b["nsp_weights"].sum()) if k else len(b["input_ids"])
      real += int(b["input_mask"].sum())
    dt = time.perf_counter() - t
    stats = (ex / rows, real / (rows * spec.max_seq_length))
    best = max(best, (ex / dt, rows / dt))
    it.close() if hasattr(it, "close") else None
  return stats + best


def measure_training(pattern, seq, k, size, steps, batch, work):
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  from configs import bert as bert_config  # pylint: disable=g-import-not-at-top
  c = bert_config.get_config(size)
  c.phase1.update(train_files=pattern, max_seq_length=seq,
                  max_predictions_per_seq=PREDS[seq], global_batch_size=batch,
                  num_steps=steps, warmup_steps=1, packing=k)
  c.phase2.num_steps = 0
  c.checkpoint.update(save_every=10**9, keep_forever=(), async_save=False)
  c.log_every = 2
  c.mesh.data = 1
  common.wait(0.25, 60)
  logged = train.train_and_evaluate(c, os.path.join(work, f"run_{seq}_{k}"))[
      "train"][1:]  # the first interval includes compilation
  return (sum(m["seq_per_s"] for m in logged) / len(logged),
          sum(m["tokens_per_s"] for m in logged) / len(logged) / seq,
          sum(m["real_token_fraction"] for m in logged) / len(logged))


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--corpus_mb", type=float, default=3.0)
  p.add_argument("--dupe_factor", type=int, default=5)
  p.add_argument("--seqs", default="128,512")
  p.add_argument("--packing", default="2,3")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--batches", type=int, default=60)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--train_size", default="mini")
  p.add_argument("--train_steps", type=int, default=0)
  p.add_argument("--train_batch", type=int, default=32)
  p.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(),
                                                    "bert_jax_input_bench"))
  a = p.parse_args()
  levels = [0] + [int(x) for x in a.packing.split(",")]
  seqs = [int(x) for x in a.seqs.split(",")]
  print("| seq | packing | examples/row | real tokens | examples/s | rows/s |")
  print("|---|---|---|---|---|---|")
  patterns = {}
  for seq in seqs:
    patterns[seq] = common.make_shards(a.work_dir, a.corpus_mb,
                                            a.dupe_factor, seq, PREDS[seq])
    spec = input_pipeline.DataSpec(patterns[seq], seq, PREDS[seq], a.batch,
                                   30522)
    for k in levels:
      per_row, real, eps, rps = measure_input(spec, k, a.batches, a.repeats)
      print(f"| {seq} | {k or 'off'} | {per_row:.3f} | {real:.1%} | "
            f"{eps:,.0f} | {rps:,.0f} |", flush=True)
  if a.train_steps:
    seq = seqs[0]
    print(f"\nTraining, {a.train_size}, seq {seq}, batch {a.train_batch} "
          f"rows, {a.train_steps} steps:")
    print("| packing | examples/s | rows/s | real tokens | speed-up |")
    print("|---|---|---|---|---|")
    base = None
    for k in levels:
      eps, rps, real = measure_training(patterns[seq], seq, k, a.train_size,
                                        a.train_steps, a.train_batch,
                                        tempfile.mkdtemp(dir=a.work_dir))
      base = base or eps
      print(f"| {k or 'off'} | {eps:.1f} | {rps:.1f} | {real:.1%} | "
            f"{eps / base:.2f}× |", flush=True)


if __name__ == "__main__":
  main()
