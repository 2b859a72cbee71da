r"""ModernBERT-tiny against BERT-Tiny on the same data and time, and
ModernBERT's step against transformers' in PyTorch, in one process.

    python -m bench.modernbert_bench                  # both parts
    python -m bench.modernbert_bench --parts=throughput --steps=20

`quality`: the embedded default corpus (6 MB) and its 8,192-entry WordPiece
vocab; shards without masks or pairs (seq 128, 40 predictions) to train on
and Google's held-out shards (15% masks) to score on, as
`bench/recipe_bench.py` makes them. Both models train with
`configs/modern.py:tiny`'s recipe (MLM only, masks drawn each step at 30%,
AdamW β2 0.98 at 1e-3, warm-up–stable–decay, no dropout), batch 64, the
same steps; only the model differs: BERT-Tiny (2 layers of 128,
feed-forward 512) or `configs/modernbert.py:tiny` (4 layers of 128, GeGLU
256, rotary, no biases), of similar size. Reported: held-out MLM accuracy
at the same training time (the shorter run's; evaluation excluded,
compilation included) and at the end.

`throughput`: one training step (forward, backward, AdamW) of ModernBERT on
one batch of random ids (seq 128, 20 masked positions a row, every row
full), ours (`train_step.make_train_step`, jitted) against
`transformers.ModernBertForMaskedLM` in PyTorch (sparse prediction: the head
on the masked positions only, as ours; SDPA attention; `torch.optim.AdamW`;
one thread per core), both from the same weights; the fastest of
`--repeats` timings of `--steps` steps each after warm-up.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from bench import quality_bench
from bench import recipe_bench


def _recipe(a, data, modern_data, model: str):
  from configs import modern  # pylint: disable=g-import-not-at-top
  from configs import modernbert  # pylint: disable=g-import-not-at-top
  c = modern.get_config("tiny")
  if model == "modernbert_tiny":
    c.model = modernbert.get_config("tiny").model
    c.model.update(max_position_embeddings=512)
  c.model.vocab_size = data["vocab_size"]
  c.seed = a.seed
  c.phase1.update(train_files=modern_data["train"], eval_files=data["eval"],
                  max_predictions_per_seq=a.preds, global_batch_size=a.batch,
                  num_steps=a.train_steps, warmup_steps=a.warmup,
                  learning_rate=a.lr)
  c.eval_every, c.eval_every_examples = 0, a.eval_every
  c.eval_batch_size, c.eval_steps = 64, a.eval_examples // 64
  c.log_every = max(1, a.train_steps // 5)
  c.checkpoint.update(save_every=10**9, keep_forever=(), keep_last=1)
  return c


def quality(a) -> None:
  from bert_jax import history  # pylint: disable=g-import-not-at-top
  from bert_jax import runs  # pylint: disable=g-import-not-at-top
  from bert_jax import summary  # pylint: disable=g-import-not-at-top
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  data = quality_bench.prepare(a.work_dir, 6.0, 8192, 5, 0.08)
  modern_data = recipe_bench.prepare_modern(
      a.work_dir, data, argparse.Namespace(corpus_mb=6.0, vocab_size=8192,
                                           preds=a.preds, eval_fraction=0.08))
  root = tempfile.mkdtemp(dir=a.work_dir, prefix="modernbert_")
  curves = {}
  for name in ("bert_tiny", "modernbert_tiny"):
    config = _recipe(a, data, modern_data, name)
    workdir = os.path.join(root, name)
    t = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    curves[name] = history.read(workdir)[0]
    params = summary.parameter_count(runs.open_run(workdir).params())
    last = curves[name][-1]
    print(f"{name}: {params:,} parameters, {time.perf_counter() - t:.0f} s in "
          f"all, {last['train_time_s']:.1f} s training; held-out MLM accuracy "
          f"{last['eval_mlm_accuracy']:.4f} after {last['step']} steps",
          flush=True)
  budget = min(c[-1]["train_time_s"] for c in curves.values())
  print(f"at the same training time ({budget:.1f} s, the shorter run):")
  for name, evals in curves.items():
    within = [e for e in evals if e["train_time_s"] <= budget + 1e-9]
    best = within[-1]
    print(f"  {name}: {best['eval_mlm_accuracy']:.4f} (step {best['step']}, "
          f"{best['train_time_s']:.1f} s)")
  print(f"workdirs: {root}")


def _batch(vocab: int, seq: int, preds: int, batch: int):
  rng = np.random.default_rng(0)
  ids = rng.integers(5, vocab, (batch, seq))
  pos = np.sort(np.stack([rng.permutation(np.arange(1, seq))[:preds]
                          for _ in range(batch)]), axis=1)
  labels = rng.integers(5, vocab, (batch, preds))
  return ids, pos, labels


def throughput(a) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from bench import common  # pylint: disable=g-import-not-at-top
  from bert_jax import modernbert  # pylint: disable=g-import-not-at-top
  from bert_jax import train_step  # pylint: disable=g-import-not-at-top
  from bert_jax.conversion import modernbert_hf  # pylint: disable=g-import-not-at-top
  from configs import modernbert as recipe  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  for size, batch in ((s.split(":")[0], int(s.split(":")[1]))
                      for s in a.sizes.split(",")):
    fields = dict(recipe.get_config(size).model)
    fields.pop("family")
    fields.update(vocab_size=8192, max_position_embeddings=512)
    ours_cfg = modernbert.ModernBertConfig(**fields)
    hf_cfg = transformers.ModernBertConfig(
        **{k: v for k, v in modernbert_hf.config_to_hf(ours_cfg).items()
           if k not in ("architectures", "model_type", "torch_dtype")},
        sparse_prediction=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    hf = transformers.ModernBertForMaskedLM(hf_cfg).train()
    params, _ = modernbert_hf.params_from_hf(
        {k: v.detach().numpy() for k, v in hf.state_dict().items()},
        ours_cfg, "torch")
    ids, pos, labels = _batch(8192, a.seq, a.preds, batch)
    # Ours.
    model = modernbert.ModernBertForMaskedLM(ours_cfg)
    tx = optax.adamw(1e-4, b2=0.98, weight_decay=1e-5)
    state = {"params": params, "opt_state": tx.init(params),
             "global_step": jnp.asarray(0, jnp.int32)}
    step = jax.jit(train_step.make_train_step(model, tx, 1, 0),
                   donate_argnums=0)
    b = {"input_ids": jnp.asarray(ids, jnp.int32),
         "input_mask": jnp.ones(ids.shape, jnp.int32),
         "segment_ids": jnp.zeros(ids.shape, jnp.int32),
         "masked_lm_positions": jnp.asarray(pos, jnp.int32),
         "masked_lm_ids": jnp.asarray(labels, jnp.int32),
         "masked_lm_weights": jnp.ones(pos.shape, jnp.float32),
         "next_sentence_labels": jnp.zeros((batch, 1), jnp.int32)}
    holder = {"state": state}

    def ours():
      s = holder["state"]
      for _ in range(a.steps):
        s, m = step(s, b)
      jax.block_until_ready(m)
      holder["state"] = s
    ours()  # compile + warm up
    t_ours = common.best_seconds(ours, a.repeats) / a.steps
    # transformers.
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.98),
                            weight_decay=1e-5)
    full = np.full(ids.shape, -100)
    np.put_along_axis(full, pos, labels, axis=1)
    args = dict(input_ids=torch.tensor(ids),
                attention_mask=torch.ones(ids.shape, dtype=torch.long),
                labels=torch.tensor(full))

    def theirs():
      for _ in range(a.steps):
        opt.zero_grad(set_to_none=True)
        hf(**args).loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
    theirs()
    t_hf = common.best_seconds(theirs, a.repeats) / a.steps
    print(f"ModernBERT-{size} seq {a.seq} batch {batch}: ours "
          f"{t_ours * 1e3:.1f} ms/step, transformers {t_hf * 1e3:.1f} ms/step: "
          f"{t_hf / t_ours:.2f}x", flush=True)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--parts", default="quality,throughput")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--train_steps", type=int, default=600)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--warmup", type=int, default=60)
  p.add_argument("--preds", type=int, default=40)
  p.add_argument("--eval_every", type=int, default=2560)
  p.add_argument("--eval_examples", type=int, default=1024)
  p.add_argument("--sizes", default="tiny:64,base:8",
                 help="throughput: size:batch pairs (configs/modernbert.py)")
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--steps", type=int, default=5, help="timed steps a repeat")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(),
                                                    "bert_jax_bench"))
  a = p.parse_args()
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  print(f"host allocator: {allocator.choose()}", flush=True)
  os.makedirs(a.work_dir, exist_ok=True)
  parts = a.parts.split(",")
  if "throughput" in parts:
    throughput(a)
  if "quality" in parts:
    quality(a)


if __name__ == "__main__":
  main()
