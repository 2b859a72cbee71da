r"""Google's BERT recipe against a modern single-phase recipe: time to a common
held-out MLM accuracy, three seeds each, in one process.

    python -m bench.recipe_bench                       # 3 seeds, 600 steps
    python -m bench.recipe_bench --seeds=0-4 --steps=1000 --plot=recipes.png

One corpus (the embedded default corpus, 6 MB), one 8,192-entry WordPiece
vocab, BERT-Tiny (L-2_H-128) at seq 128, the same batch, steps and warm-up
for both, each recipe's own optimizer at a rate that learns on BERT-Tiny,
and two sets of shards from the same text and the same held-out documents:

* `original` (`configs/bert.py:tiny`, phase 1 only): Google's shards
  (sentence pairs, static 15% masks, 20 predictions, dupe 5), MLM + NSP,
  dropout 0.1, Google's truncated-normal initialisation, LAMB at 1e-2
  (Google's AdamW at 1e-3 stayed at the unigram accuracy for 600 steps;
  bench/RESULTS.md), linear decay.
* `modern` (`configs/modern.py:tiny`): shards without masks or pairs
  (`--masking=none --nsp=False`, full rows across documents, dupe 1, 40
  predictions), MLM only, masks drawn each step at 30%, no dropout, AdamW
  β2 0.98 at 1e-3, warm-up–stable–decay.

Both are scored on the same held-out examples with the same masks: the
original recipe's held-out shards (15%, 20 predictions), every
`--eval_every` examples. The target is a round figure every run reaches (the
lowest of the runs' best accuracies, rounded down to 0.005) unless
`--target` is given; `bert_jax.stats.time_to_target` gives each recipe's
time to it and final accuracy with intervals over the seeds, and the
comparison. Training time excludes evaluation and includes compilation,
input and checkpoint writes. Seeds run interleaved (original 0, modern 0,
original 1, ...) so that drift in the machine's speed falls on both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

from bench import quality_bench


def prepare_modern(work: str, data: dict, a) -> dict:
  """The same corpus and vocab, without masks or sentence pairs (cached)."""
  from data_prep import job  # pylint: disable=g-import-not-at-top
  from data_prep import pipeline  # pylint: disable=g-import-not-at-top
  out = os.path.join(work, f"mlm_{a.corpus_mb:g}mb_v{a.vocab_size}_p{a.preds}"
                     f"_e{a.eval_fraction:g}")
  if not os.path.exists(os.path.join(out, "metadata.json")):
    cfg = pipeline.PrepConfig(
        vocab_file=data["vocab_file"], max_seq_length=quality_bench.SEQ,
        max_predictions_per_seq=a.preds, dupe_factor=1,
        eval_fraction=a.eval_fraction, masking="none", nsp=False)
    job.generate(cfg, [data["corpus"]], job.Outputs(output_dir=out,
                                                    num_shards=4),
                 workers=os.cpu_count() or 1)
  with open(os.path.join(out, "metadata.json")) as f:
    meta = json.load(f)
  return {"train": os.path.join(out, "train-*"),
          "instances": {k: v["instances"] for k, v in meta["splits"].items()}}


def _shared(c, a, data, seed: int, lr: float) -> None:
  c.seed = seed
  c.model.vocab_size = data["vocab_size"]
  c.phase1.update(eval_files=data["eval"], global_batch_size=a.batch,
                  num_steps=a.steps, warmup_steps=a.warmup, learning_rate=lr)
  c.phase2.num_steps = 0
  c.eval_every, c.eval_every_examples = 0, a.eval_every
  c.eval_batch_size = a.eval_batch
  c.eval_steps = a.eval_examples // a.eval_batch
  c.log_every = max(1, a.steps // 5)
  c.checkpoint.update(save_every=10**9, keep_forever=(), keep_last=1)


def configs(a, data, modern_data, seed: int) -> dict:
  from configs import bert  # pylint: disable=g-import-not-at-top
  from configs import modern  # pylint: disable=g-import-not-at-top
  original = bert.get_config("tiny")
  original.phase1.update(train_files=data["train"])
  _shared(original, a, data, seed, a.original_lr)
  new = modern.get_config("tiny")
  new.phase1.update(train_files=modern_data["train"],
                    max_predictions_per_seq=a.preds)
  _shared(new, a, data, seed, a.modern_lr)
  return {"original": original, "modern": new}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", default="0-2")
  p.add_argument("--steps", type=int, default=600)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--original_lr", type=float, default=1e-2,
                 help="LAMB's peak rate (configs/bert.py)")
  p.add_argument("--modern_lr", type=float, default=1e-3,
                 help="AdamW's peak rate (configs/modern.py)")
  p.add_argument("--warmup", type=int, default=60)
  p.add_argument("--preds", type=int, default=40,
                 help="the modern shards' predictions (30% of 128 is 38)")
  p.add_argument("--eval_every", type=int, default=2560,
                 help="training examples between evaluations")
  p.add_argument("--eval_batch", type=int, default=64)
  p.add_argument("--eval_examples", type=int, default=1024)
  p.add_argument("--corpus_mb", type=float, default=6.0)
  p.add_argument("--vocab_size", type=int, default=8192)
  p.add_argument("--dupe", type=int, default=5)
  p.add_argument("--eval_fraction", type=float, default=0.08)
  p.add_argument("--target", type=float, default=0.0)
  p.add_argument("--nboot", type=int, default=2000)
  p.add_argument("--plot", default="", help="PNG of the accuracy curves")
  p.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(),
                                                    "bert_jax_bench"))
  p.add_argument("--out", default="", help="write the report as JSON here")
  a = p.parse_args()
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  print(f"host allocator: {allocator.choose()}", flush=True)
  from bert_jax import seed_sweep  # pylint: disable=g-import-not-at-top
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  from bert_jax.stats import time_to_target  # pylint: disable=g-import-not-at-top
  os.makedirs(a.work_dir, exist_ok=True)
  data = quality_bench.prepare(a.work_dir, a.corpus_mb, a.vocab_size, a.dupe,
                               a.eval_fraction)
  modern_data = prepare_modern(a.work_dir, data, a)
  print(f"original shards: {data['instances']}; modern shards: "
        f"{modern_data['instances']}", flush=True)
  root = tempfile.mkdtemp(dir=a.work_dir, prefix="recipes_")
  seeds = seed_sweep.parse_seeds(a.seeds)
  for seed in seeds:
    for name, config in configs(a, data, modern_data, seed).items():
      t = time.perf_counter()
      workdir = os.path.join(root, name, f"seed_{seed}")
      result = train.train_and_evaluate(config, workdir)
      print(f"{name} seed {seed}: {time.perf_counter() - t:.0f} s in all, "
            f"{result['train_time_s']:.0f} s training, final held-out MLM "
            f"accuracy {result['eval']['eval_mlm_accuracy']:.4f}", flush=True)
  arms = {name: time_to_target.read_arm(name, os.path.join(root, name,
                                                           "seed_*"))
          for name in ("original", "modern")}
  target = a.target or math.floor(200 * min(
      max(e["eval_mlm_accuracy"] for e in r.evals)
      for runs in arms.values() for r in runs)) / 200
  rep = time_to_target.summarize(arms, target, nboot=a.nboot)
  rep["workdirs"] = root
  print(time_to_target.format_report(rep))
  if a.plot:
    time_to_target.plot(arms, target, a.plot)
    print(f"curves: {a.plot}")
  if a.out:
    with open(a.out, "w") as f:
      json.dump(rep, f, indent=1)


if __name__ == "__main__":
  main()
