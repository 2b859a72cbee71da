r"""Learning quality and time to accuracy: bert_jax against a plain torch loop.

    python -m bench.quality_bench                      # all three runs
    python -m bench.quality_bench --runs=torch,bert_jax --steps=1000

One process, one set of shards (the embedded default corpus → an 8,192-entry
WordPiece vocab → Google-format seq-128 shards, 20 predictions, dupe 5, a
held-out split by document), BERT-Tiny from scratch, and three runs:

* `torch`: a plain PyTorch loop over `transformers.BertForPreTraining` (the
  tanh GELU, normal(0.02) initialisation, dropout 0.1), the MLM head on the
  gathered masked positions, Google's weighted MLM loss + NSP loss,
  `torch.optim.AdamW` (no decay on biases and LayerNorm), global-norm
  clipping at 1.0, `get_linear_schedule_with_warmup`. It reads the very
  batches bert_jax reads (`input_pipeline.host_dataset`, same seed/order).
* `bert_jax`: `train.train_and_evaluate` with the same recipe
  (`optimizer.name=adamw`, `phase1.schedule=linear`, `model.initializer=
  normal`, same rate, warm-up, decay, clip, dropout, batch, steps).
* `fast`: `configs/fast.py`, with `target_mlm_accuracy` = the torch loop's
  held-out MLM accuracy at its last step and `stop_at_target`; reports the
  training time to reach it against the torch loop's.

Both held-out evaluations read the same examples and report means over all
of them (bert_jax packs them, `eval_packing`; torch evaluates them unpacked,
in Google's padded rows). Training time excludes
evaluation and includes everything else (compilation, the input pipeline,
checkpoint writes for bert_jax). Torch uses one thread per core; both run
under the host allocator bert_jax's entry points choose (`allocator.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

import torch
import transformers

from bert_jax import allocator
from bert_jax import input_pipeline
from bert_jax import losses
from bert_jax import settings
from bert_jax import train
from configs import bert as bert_config
from configs import fast as fast_config

SEQ, PREDS = 128, 20
KEYS = ("mlm_accuracy", "mlm_loss", "nsp_accuracy", "nsp_loss")


def prepare(work: str, corpus_mb: float, vocab_size: int, dupe: int,
            eval_fraction: float) -> dict:
  """Default corpus → WordPiece vocab → train/eval shards (cached)."""
  from data_prep import build_vocab  # pylint: disable=g-import-not-at-top
  from data_prep import default_corpus  # pylint: disable=g-import-not-at-top
  from data_prep import job  # pylint: disable=g-import-not-at-top
  from data_prep import pipeline  # pylint: disable=g-import-not-at-top
  tag = f"{corpus_mb:g}mb_v{vocab_size}_d{dupe}_e{eval_fraction:g}"
  out = os.path.join(work, f"quality_{tag}")
  corpus = os.path.join(work, f"corpus_{corpus_mb:g}mb.txt")
  if not os.path.exists(corpus):
    default_corpus.write_corpus(corpus, max_mb=corpus_mb)
  vocab = os.path.join(work, f"vocab_{corpus_mb:g}mb_{vocab_size}.txt")
  if not os.path.exists(vocab):
    build_vocab.train_wordpiece([corpus], vocab, vocab_size)
  if not os.path.exists(os.path.join(out, "metadata.json")):
    cfg = pipeline.PrepConfig(vocab_file=vocab, max_seq_length=SEQ,
                              max_predictions_per_seq=PREDS, dupe_factor=dupe,
                              eval_fraction=eval_fraction)
    job.generate(cfg, [corpus], job.Outputs(output_dir=out, num_shards=4),
                 workers=os.cpu_count() or 1)
  with open(os.path.join(out, "metadata.json")) as f:
    meta = json.load(f)
  return {"train": os.path.join(out, "train-*"),
          "eval": os.path.join(out, "eval-*"), "vocab_size": vocab_size,
          "vocab_file": vocab, "corpus": corpus,
          "instances": {k: v["instances"] for k, v in meta["splits"].items()}}


def base_config(a, data):
  """configs/bert.py:tiny with the torch loop's recipe."""
  c = bert_config.get_config(a.size)
  c.model.vocab_size = data["vocab_size"]
  c.model.initializer = "normal"
  c.optimizer.name = "adamw"
  c.phase1.update(train_files=data["train"], eval_files=data["eval"],
                  global_batch_size=a.batch, num_steps=a.steps,
                  warmup_steps=a.warmup, learning_rate=a.lr,
                  schedule="linear")
  c.phase2.num_steps = 0
  _common(c, a)
  c.eval_every = a.steps // a.evals
  return c


def _common(c, a) -> None:
  c.eval_batch_size = a.eval_batch
  c.eval_steps = a.eval_examples // a.eval_batch
  c.log_every = max(1, a.steps // 10)
  c.checkpoint.update(save_every=10**9, keep_forever=(), keep_last=1)


def run_bert_jax(config, work: str) -> dict:
  workdir = tempfile.mkdtemp(dir=work, prefix="run_")
  try:
    result = train.train_and_evaluate(config, workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  points = result["evals"] + ([{"step": config.phase1.num_steps,
                                **result["eval"]}] if "eval" in result else [])
  return {"points": [{"step": p["step"], "train_time_s": p["train_time_s"],
                      "eval_time_s": p["eval_time_s"],
                      **{k: p[f"eval_{k}"] for k in KEYS}} for p in points],
          "target": result.get("target"),
          "batch": config.phase1.global_batch_size,
          "train_time_s": result.get("train_time_s")}


class TorchLoop:
  """The reference: transformers' BertForPreTraining in a plain loop."""

  def __init__(self, config):
    m = config.model
    torch.manual_seed(config.seed)
    hf = transformers.BertConfig(
        vocab_size=m.vocab_size, hidden_size=m.hidden_size,
        num_hidden_layers=m.num_hidden_layers,
        num_attention_heads=m.num_attention_heads,
        intermediate_size=m.intermediate_size, hidden_act="gelu_new",
        hidden_dropout_prob=m.hidden_dropout_prob,
        attention_probs_dropout_prob=m.attention_probs_dropout_prob,
        max_position_embeddings=m.max_position_embeddings,
        type_vocab_size=m.type_vocab_size,
        initializer_range=m.initializer_range, layer_norm_eps=1e-12)
    self.model = transformers.BertForPreTraining(hf)
    o, p = config.optimizer, config.phase1
    decay, no_decay = [], []
    for name, w in self.model.named_parameters():
      (no_decay if "bias" in name or "LayerNorm" in name else decay).append(w)
    self.opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=p.learning_rate, betas=(o.b1, o.b2), eps=o.eps)
    self.sched = transformers.get_linear_schedule_with_warmup(
        self.opt, p.warmup_steps, p.num_steps)
    self.clip = o.clip_norm

  def sums(self, b: dict) -> dict:
    """`losses.pretraining_sums` of one batch, in torch."""
    t = {k: torch.from_numpy(np.array(v)) for k, v in b.items()}
    seq, pooled = self.model.bert(
        input_ids=t["input_ids"].long(), attention_mask=t["input_mask"].long(),
        token_type_ids=t["segment_ids"].long(), return_dict=False)[:2]
    pos = t["masked_lm_positions"].long()
    gathered = torch.gather(seq, 1, pos[..., None].expand(-1, -1,
                                                          seq.shape[-1]))
    mlm, nsp = self.model.cls(gathered, pooled)
    ids, w = t["masked_lm_ids"].long(), t["masked_lm_weights"].float()
    nll = torch.nn.functional.cross_entropy(
        mlm.reshape(-1, mlm.shape[-1]), ids.reshape(-1),
        reduction="none").reshape(ids.shape)
    labels = t["next_sentence_labels"].long().reshape(-1)
    return {"mlm_nll": (w * nll).sum(),
            "mlm_hit": (w * (mlm.argmax(-1) == ids).float()).sum(),
            "mlm_weight": w.sum(),
            "nsp_nll": torch.nn.functional.cross_entropy(nsp, labels,
                                                         reduction="sum"),
            "nsp_hit": (nsp.argmax(-1) == labels).float().sum(),
            "nsp_count": torch.tensor(float(len(labels)))}

  def step(self, batch: dict) -> float:
    self.model.train()
    s = self.sums(batch)  # Google's loss: MLM weighted mean + NSP mean
    loss = (s["mlm_nll"] / (s["mlm_weight"] + 1e-5) +
            s["nsp_nll"] / s["nsp_count"])
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
    self.opt.step()
    self.sched.step()
    return float(loss.detach())

  @torch.no_grad()
  def evaluate(self, batches) -> dict:
    """Means over all the held-out examples, as `evaluation.HeldOut`."""
    self.model.eval()
    total: dict = {}
    for b in batches:
      for k, v in self.sums(b).items():
        total[k] = total.get(k, 0.0) + float(v)
    m = losses.losses_from_sums(total, maximum=max)
    return {k: m[k] for k in KEYS}


def _batches(files: str, config, training: bool):
  p = config.phase1
  spec = input_pipeline.DataSpec(
      files, p.max_seq_length, p.max_predictions_per_seq,
      p.global_batch_size if training else config.eval_batch_size)
  if training:  # exactly the trainer's stream (phase 1, one host)
    ds = input_pipeline.host_dataset(spec, settings.read(config).data_seed * 1000,
                                     shuffle_buffer=config.shuffle_buffer)
    return ds.as_numpy_iterator()
  ds = input_pipeline.host_dataset(spec, seed=0, training=False)
  return list(ds.take(config.eval_steps).as_numpy_iterator())


def run_torch(config) -> dict:
  loop = TorchLoop(config)
  held_out = _batches(config.phase1.eval_files, config, training=False)
  batches = _batches(config.phase1.train_files, config, training=True)
  points, train_s = [], 0.0
  for step in range(1, config.phase1.num_steps + 1):
    t = time.perf_counter()
    loop.step(next(batches))
    train_s += time.perf_counter() - t
    if step % config.eval_every == 0 or step == config.phase1.num_steps:
      t = time.perf_counter()
      ev = loop.evaluate(held_out)
      points.append({"step": step, "train_time_s": train_s,
                     "eval_time_s": time.perf_counter() - t, **ev})
      print(f"  torch step {step}: {points[-1]}", flush=True)
  return {"points": points, "train_time_s": train_s,
          "batch": config.phase1.global_batch_size}


def _table(runs: dict) -> str:
  steps = sorted({p["step"] for r in runs.values() for p in r["points"]
                  if r.get("equal_steps", True)})
  lines = ["| run | " + " | ".join(f"step {s}" for s in steps) + " |",
           "|---|" + "---|" * len(steps)]
  for key, label in (("mlm_accuracy", "MLM acc"), ("mlm_loss", "MLM loss"),
                     ("nsp_accuracy", "NSP acc"), ("train_time_s",
                                                   "train s")):
    for name, r in runs.items():
      if not r.get("equal_steps", True):
        continue
      at = {p["step"]: p for p in r["points"]}
      lines.append(f"| {name} {label} | " + " | ".join(
          f"{at[s][key]:.4f}" if s in at and key != "train_time_s" else
          (f"{at[s][key]:.1f}" if s in at else "–") for s in steps) + " |")
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", default="torch,bert_jax,fast")
  p.add_argument("--size", default="tiny")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--warmup", type=int, default=100)
  p.add_argument("--evals", type=int, default=4, help="checkpoints compared")
  p.add_argument("--eval_batch", type=int, default=64)
  p.add_argument("--eval_examples", type=int, default=2048)
  p.add_argument("--corpus_mb", type=float, default=6.0)
  p.add_argument("--vocab_size", type=int, default=8192)
  p.add_argument("--dupe", type=int, default=5)
  p.add_argument("--eval_fraction", type=float, default=0.08)
  p.add_argument("--target", type=float, default=0.0,
                 help="fast run's target (0: the torch run's final accuracy)")
  p.add_argument("--fast_overrides", default="",
                 help="comma-separated field=value for the fast config")
  p.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(),
                                                    "bert_jax_bench"))
  p.add_argument("--out", default="", help="write the results as JSON here")
  a = p.parse_args()
  # Both runners under the allocator bert_jax's entry points choose (torch
  # gains from it as much: bench/RESULTS.md, "Host allocator").
  print(f"host allocator: {allocator.choose()}", flush=True)
  os.makedirs(a.work_dir, exist_ok=True)
  torch.set_num_threads(os.cpu_count() or 1)
  data = prepare(a.work_dir, a.corpus_mb, a.vocab_size, a.dupe,
                 a.eval_fraction)
  print(f"data: {data}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)", flush=True)
  config, runs = base_config(a, data), {}
  for name in a.runs.split(","):
    t = time.perf_counter()
    if name == "torch":
      runs[name] = run_torch(config)
    elif name == "bert_jax":
      runs[name] = run_bert_jax(config, a.work_dir)
    elif name == "fast":
      target = a.target or (runs["torch"]["points"][-1]["mlm_accuracy"]
                            if "torch" in runs else 0.0)
      if not target:
        raise SystemExit("--runs=fast needs --target or the torch run first")
      c = fast_config.get_config(a.size)
      c.model.vocab_size = data["vocab_size"]
      c.phase1.update(train_files=data["train"], eval_files=data["eval"])
      _common(c, a)
      c.target_mlm_accuracy = target
      for kv in filter(None, a.fast_overrides.split(",")):
        k, v = kv.split("=")
        *path, leaf = k.split(".")
        node = c
        for part in path:
          node = node[part]
        node[leaf] = type(node[leaf])(v)
      runs[name] = run_bert_jax(c, a.work_dir)
      runs[name]["equal_steps"] = False
    else:
      raise SystemExit(f"--runs: unknown run {name!r}")
    print(f"{name}: {time.perf_counter() - t:.0f} s in all; "
          f"{json.dumps(runs[name]['points'][-1])}", flush=True)
  print(_table(runs))
  n_eval = config.eval_steps * config.eval_batch_size
  for name, r in runs.items():  # the last evaluation: compiled, warm
    last = r["points"][-1]
    train_rate = last["step"] * r["batch"] / last["train_time_s"]
    print(f"{name}: training {train_rate:,.0f} examples/s (rows when packed; "
          f"compilation included), held-out evaluation "
          f"{n_eval / last['eval_time_s']:,.0f} examples/s "
          f"({n_eval / last['eval_time_s'] / train_rate:.2f}x)")
  if "torch" in runs and "bert_jax" in runs:
    gap = max(abs(x["mlm_accuracy"] - y["mlm_accuracy"]) for x, y in
              zip(runs["torch"]["points"], runs["bert_jax"]["points"]))
    print(f"largest MLM accuracy gap at equal steps: {gap:.4f}")
  if "fast" in runs:
    r, ref = runs["fast"], runs.get("torch")
    if r["target"]:
      msg = (f"fast: reached {r['target']['target']:.4f} at step "
             f"{r['target']['step']} after {r['target']['train_time_s']:.1f} "
             "s of training")
      if ref:
        msg += (f"; torch loop {ref['train_time_s']:.1f} s → "
                f"{r['target']['train_time_s'] / ref['train_time_s']:.3f} of "
                "its time")
      print(msg)
    else:
      print(f"fast: did not reach the target; last: {r['points'][-1]}")
  if a.out:
    with open(a.out, "w") as f:
      json.dump({"data": data, "args": vars(a), "runs": runs}, f, indent=1)


if __name__ == "__main__":
  main()
