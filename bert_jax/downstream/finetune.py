r"""Fine-tune a checkpoint on sentence (pair) classification or regression
(command line: `python -m bert_jax.finetune`; options: configs/finetune.py).

The downstream step of a MultiBERTs-style seed study, as Google's
`run_classifier.py`: the encoder of a checkpoint (a training run's workdir or
a `bert_jax.convert import_*` one) plus dropout and a dense layer on the
pooled output (`output_weights` [labels, H], truncated normal 0.02, and
`output_bias`; regression: one output and a squared-error loss), trained with
Google's AdamW (no bias correction, decay 0.01 off norms/biases, global
norm clip 1.0) under a linear warm-up then linear decay. The fine-tuning seed
decides the classifier's initialisation, dropout and the data order.
A ModernBERT checkpoint gets transformers' ModernBertForSequenceClassification
head instead (`modernbert.ModernBertForSequenceClassification`: `cls` or
`mean` pooling by `config.pooling`, then the prediction head, started from
the checkpoint's MLM head as transformers' from_pretrained does, dropout and
`classifier`).

Task files: see `bert_jax/downstream/tasks.py`. Outputs in `output_dir`, each written
under a temporary name and renamed:
  predictions.jsonl       dev: {"index", "label", "prediction",
                           "probabilities" (classification)}
  predictions.meta.json   {"seed" (pretraining; null if unknown),
                           "finetune_seed", "task", "checkpoint",
                           "checkpoint_step", "metric", "labels"}
  metrics.json            dev metrics after every epoch, and the final ones
  test_predictions.jsonl  (+ .meta.json) when the task has a test file
Labels and class predictions are ids into `labels`. Steps are jit-compiled
once (fixed batch shapes; a short last batch is padded with weight-0
examples) and data-parallel over all local devices.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Mapping

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bert_jax import families
from bert_jax import models
from bert_jax import modernbert
from bert_jax import optim
from bert_jax import preflight
from bert_jax import runs
from bert_jax import sharding
from bert_jax import xla_cpu
from bert_jax.conversion import interop
from bert_jax.downstream import options
from bert_jax.downstream import tasks
from bert_jax.stats import metrics as metrics_lib
from data_prep import fileio

METRICS = ("accuracy", "f1", "matthews", "pearson", "spearman")


class Classifier(nn.Module):
  """`bert` encoder → dropout(pooled) → pooled · output_weightsᵀ + bias."""
  cfg: models.BertConfig
  num_outputs: int
  dropout: float

  @nn.compact
  def __call__(self, input_ids, input_mask, segment_ids,
               deterministic: bool = True):
    _, pooled = models.Bert(self.cfg, name="bert")(
        input_ids, input_mask, segment_ids, deterministic)
    pooled = nn.Dropout(self.dropout)(pooled, deterministic=deterministic)
    w = self.param("output_weights", _head_init, (self.num_outputs,
                                                  self.cfg.hidden_size))
    b = self.param("output_bias", nn.initializers.zeros, (self.num_outputs,))
    return pooled.astype(jnp.float32) @ w.T + b


_head_init = jax.nn.initializers.truncated_normal(0.02)


# --- metrics -----------------------------------------------------------------
def metric_names(metric: str, regression: bool, num_labels: int
                 ) -> list[str]:
  """The metrics to report; the first is the primary (recorded) one."""
  if metric == "auto":
    if regression:
      return ["pearson", "spearman"]
    return ["accuracy", "f1"] if num_labels == 2 else ["accuracy"]
  if metric not in METRICS:
    raise ValueError(f"metric={metric!r}: expected auto or one of "
                     f"{list(METRICS)}.")
  if regression != (metric in ("pearson", "spearman")):
    raise ValueError(f"metric={metric} does not fit a "
                     f"{'regression' if regression else 'classification'} "
                     "task (pearson/spearman are for regression).")
  if metric == "f1" and num_labels != 2:
    raise ValueError(f"metric=f1 needs two labels; this task has "
                     f"{num_labels} (use accuracy or matthews).")
  return [metric]


def compute_metrics(names, labels, preds) -> dict[str, float | None]:
  """{name: value}; None where undefined (e.g. correlation of a constant)."""
  out = {}
  for name in names:
    value = metrics_lib.get(name)(np.asarray(labels), np.asarray(preds))
    out[name] = value if math.isfinite(value) else None
  return out


# --- data --------------------------------------------------------------------
def _batch(rows, segs, labels, idx, batch_size: int, max_seq_length: int,
           regression: bool) -> dict[str, np.ndarray]:
  """Examples `idx` (≤ batch_size) zero-padded to [batch_size, seq];
  `weight` 0 marks the padding examples."""
  ids = np.zeros((batch_size, max_seq_length), np.int32)
  seg, mask = np.zeros_like(ids), np.zeros_like(ids)
  label = np.zeros((batch_size,), np.float32 if regression else np.int32)
  weight = np.zeros((batch_size,), np.float32)
  for r, i in enumerate(idx):
    k = len(rows[i])
    ids[r, :k], seg[r, :k], mask[r, :k] = rows[i], segs[i], 1
    if labels is not None:
      label[r] = labels[i]
    weight[r] = 1.0
  return {"input_ids": ids, "input_mask": mask, "segment_ids": seg,
          "label": label, "weight": weight}


# --- steps -------------------------------------------------------------------
def classifier(cfg, num_outputs: int, dropout: float, pooling: str = "cls"):
  """The fine-tuning model of the checkpoint's family."""
  if families.family(cfg) == "modernbert":
    return modernbert.ModernBertForSequenceClassification(
        cfg, num_outputs, dropout, pooling)
  if pooling != "cls":
    raise ValueError(f"config.pooling={pooling}: a BERT checkpoint "
                     "classifies from its pooler on [CLS] (pooling=cls); "
                     "mean pooling is for ModernBERT.")
  return Classifier(cfg, num_outputs, dropout)


@functools.lru_cache(maxsize=4)
def _steps(cfg, num_outputs: int, dropout: float, regression: bool,
           weight_decay: float, clip_norm: float, mesh: jax.sharding.Mesh,
           cpu_dots: str = "auto", pooling: str = "cls"):
  """(model, optimizer, jitted train step, jitted forward). Cached so that
  runs differing only in seed, data or learning rate reuse the compilation:
  the learning rate enters each step as an argument (the optimizer is built
  with rate 1; updates are scaled by the schedule's value on the host)."""
  model = classifier(cfg, num_outputs, dropout, pooling)
  tx = optim.adamw_google(1.0, weight_decay=weight_decay,
                          clip_norm=clip_norm or None)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = sharding.batch_sharding(mesh)

  def loss_fn(params, batch, rng):
    logits = model.apply({"params": params}, batch["input_ids"],
                         batch["input_mask"], batch["segment_ids"],
                         deterministic=False, rngs={"dropout": rng})
    per = example_losses(logits, batch["label"], regression)
    w = batch["weight"]
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)

  def train_step(state, batch, lr, key):
    rng = jax.random.fold_in(key, state["step"])
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, rng)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    updates = jax.tree_util.tree_map(lambda u: lr * u, updates)
    return {"params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state, "step": state["step"] + 1}, loss

  def forward(params, batch):
    return model.apply({"params": params}, batch["input_ids"],
                       batch["input_mask"], batch["segment_ids"])

  opts = xla_cpu.compiler_options(cpu_dots, cfg.hidden_size,
                                  mesh.devices.flat[0].platform)
  train = jax.jit(train_step, in_shardings=(replicated, data, None, None),
                  out_shardings=(replicated, replicated), donate_argnums=0,
                  compiler_options=opts)
  evaluate = jax.jit(forward, in_shardings=(replicated, data),
                     out_shardings=replicated, compiler_options=opts)
  init_opt = jax.jit(tx.init, out_shardings=replicated)
  return model, init_opt, train, evaluate


def example_losses(logits, labels, regression: bool):
  if regression:
    return jnp.square(logits[:, 0] - labels)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def init_params(model, checkpoint: Any, seed_key) -> dict:
  """The checkpoint's encoder (its whole parameter tree) plus a classifier
  drawn from `seed_key`."""
  n = model.num_outputs
  ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  want = nn.unbox(jax.eval_shape(
      lambda i: model.init(jax.random.PRNGKey(0), i, i, i), ids)["params"])
  if isinstance(model, modernbert.ModernBertForSequenceClassification):
    params = _modernbert_params(model, checkpoint, seed_key)
  else:
    h = model.cfg.hidden_size
    encoder = checkpoint["bert"]
    if "pooler" not in encoder:  # an MLM-only model: a fresh pooler, as HF
      fresh = nn.unbox(model.init(jax.random.fold_in(seed_key, 1),
                                  *[jnp.ones((1, 8), jnp.int32)] * 3)["params"])
      encoder = {**encoder, "pooler": fresh["bert"]["pooler"]}
      logging.info("The checkpoint has no pooler (MLM-only pretraining); it "
                   "starts fresh, as transformers' "
                   "BertForSequenceClassification does from a BertForMaskedLM.")
    params = {"bert": encoder,
              "output_weights": _head_init(seed_key, (n, h), jnp.float32),
              "output_bias": jnp.zeros((n,), jnp.float32)}
  if (jax.tree_util.tree_structure(want) !=
      jax.tree_util.tree_structure(params)):
    raise interop.InteropError("The checkpoint's encoder does not match the "
                               "model its config describes.")
  return params


def _modernbert_params(model, checkpoint: Any, seed_key) -> dict:
  """`model` from the checkpoint; `head_dense`/`head_norm` from its MLM head
  where it has one (transformers' ModernBertForSequenceClassification loads
  them from a ModernBertForMaskedLM), else fresh; `classifier` fresh."""
  made = nn.unbox(model.init(seed_key, *[jnp.ones((1, 8), jnp.int32)] * 3)[
      "params"])
  mlm = checkpoint.get("mlm", {})
  head = {k: mlm[k] for k in ("head_dense", "head_norm") if k in mlm}
  if len(head) < 2:
    head = {k: made[k] for k in ("head_dense", "head_norm")}
    logging.info("The checkpoint has no MLM head; the classifier's "
                 "prediction head starts fresh (ModernBERT's init).")
  return {"model": checkpoint["model"], **head,
          "classifier": made["classifier"]}


# --- outputs -----------------------------------------------------------------
def _prediction_lines(logits: np.ndarray, labels, regression: bool) -> str:
  lines = []
  for i, row in enumerate(logits):
    rec: dict[str, Any] = {"index": i}
    if labels is not None:
      rec["label"] = labels[i]
    if regression:
      rec["prediction"] = float(row[0])
    else:
      p = _softmax(row)
      rec["prediction"] = int(np.argmax(row))
      rec["probabilities"] = [float(x) for x in p]
    lines.append(json.dumps(rec))
  return "".join(l + "\n" for l in lines)


def _softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x.astype(np.float64) - np.max(x))
  return e / e.sum()


def _json(x) -> str:
  return json.dumps(x, indent=2) + "\n"


# --- the run -----------------------------------------------------------------
def finetune(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict:
  """Fine-tunes, evaluates and writes the outputs; returns the summary that
  is also written to metrics.json. `config` has every field of
  configs/finetune.py (start from its `get_config()`)."""
  c = options.read(config)
  preflight.writable(c.output_dir, "config.output_dir")  # before training
  t0 = time.perf_counter()
  job = _load(c)
  prep, state = _prepare(job)
  state, epochs, logits = _train(job, prep, state)
  return _write_outputs(job, prep, state, epochs, logits, t0)


@dataclasses.dataclass
class _Job:
  """What `_load` gathers for the run: settings, task, checkpoint, model
  config, features."""
  c: options.Options
  task: Any
  names: list[str]
  run: runs.Run
  encoder: Any
  cfg: Any  # models.BertConfig | modernbert.ModernBertConfig
  dropout: float
  feats: dict
  devices: list


def _load(c) -> _Job:
  """The task's files, the checkpoint and its vocab, the features."""
  task = tasks.load_task(
      c.task_dir, str(c.text_a), str(c.text_b), str(c.label),
      bool(c.has_header), c.labels, bool(c.regression), c.task_name,
      test_has_header=options.CHOICES[str(c.test_has_header).lower()],
      test_text_a=str(c.test_text_a), test_text_b=str(c.test_text_b) or None)
  names = metric_names(c.metric, task.regression, len(task.labels or ()))
  devices = jax.local_devices()
  if c.batch_size <= 0 or c.batch_size % len(devices):
    raise ValueError(f"config.batch_size={c.batch_size} must be a positive "
                     f"multiple of the {len(devices)} local devices.")
  run = runs.open_run(c.init_checkpoint, c.init_step,
                      what="config.init_checkpoint")
  encoder, cfg = run.params(), run.model_config
  if c.max_seq_length > cfg.max_position_embeddings:
    raise ValueError(f"config.max_seq_length={c.max_seq_length} exceeds the "
                     f"model's {cfg.max_position_embeddings} positions.")
  cfg, dropout = _with_dropout(cfg, float(c.dropout))
  if c.dtype:
    cfg = dataclasses.replace(cfg, dtype=c.dtype)
  from data_prep import tokenization  # pylint: disable=g-import-not-at-top
  vocab_file, lower = run.vocab()
  vocab_file = c.vocab_file or vocab_file
  if vocab_file is None:
    raise ValueError(f"No vocab recorded for {c.init_checkpoint}; set "
                     "config.vocab_file.")
  interop.check_vocab(vocab_file, cfg)
  if str(c.do_lower_case).lower() != "auto":
    lower = options.CHOICES[str(c.do_lower_case).lower()]
  tok = tokenization.load_tokenizer(vocab_file, lower)
  splits = {"train": task.train, "dev": task.dev, "test": task.test}
  feats = {name: tasks.featurize(split.examples(), tok, c.max_seq_length)
           for name, split in splits.items() if split is not None}
  return _Job(c, task, names, run, encoder, cfg, dropout, feats, devices)


def _with_dropout(cfg, dropout: float):
  """(cfg, classifier dropout) for `config.dropout`: ≥ 0 sets the encoder's
  dropouts and the classifier's; -1 keeps the checkpoint's (a ModernBERT's
  classifier then has none, transformers' classifier_dropout default)."""
  bert = families.family(cfg) == "bert"
  if dropout < 0:
    return cfg, cfg.hidden_dropout_prob if bert else 0.0
  if bert:
    return dataclasses.replace(cfg, hidden_dropout_prob=dropout,
                               attention_probs_dropout_prob=dropout), dropout
  return dataclasses.replace(cfg, embedding_dropout=dropout,
                             attention_dropout=dropout,
                             mlp_dropout=dropout), dropout


@dataclasses.dataclass
class _Prepared:
  """The compiled steps, the mesh and the schedule."""
  model: Any
  init_opt: Any
  train_step: Any
  forward: Any
  data_sh: Any
  total: int
  warmup: int
  lrs: np.ndarray
  dropout_key: Any


def _prepare(job: _Job) -> tuple[_Prepared, dict]:
  """The classifier (encoder from the checkpoint, a fresh head), its
  optimizer state and the learning-rate schedule."""
  c = job.c
  mesh = sharding.create_mesh(-1, devices=job.devices)
  model, init_opt, train_step, forward = _steps(
      job.cfg, job.task.num_outputs, job.dropout, job.task.regression,
      float(c.weight_decay), float(c.clip_norm), mesh, str(c.cpu_dots),
      str(c.pooling))
  init_key, dropout_key = jax.random.split(jax.random.PRNGKey(c.seed))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  params = jax.device_put(init_params(model, job.encoder, init_key),
                          replicated)
  job.encoder = None
  # Committed to the mesh like the step's outputs: one compilation.
  state = {"params": params, "opt_state": init_opt(params),
           "step": jax.device_put(jnp.zeros((), jnp.int32), replicated)}
  per_epoch = math.ceil(len(job.task.train) / c.batch_size)
  total = max(1, math.ceil(per_epoch * c.num_epochs - 1e-9))
  warmup = int(total * c.warmup_proportion)
  lrs = np.asarray(jax.jit(optim.google_schedule(
      c.learning_rate, warmup, total))(np.arange(total)), np.float32)
  prep = _Prepared(model, init_opt, train_step, forward,
                   sharding.batch_sharding(mesh), total, warmup, lrs,
                   dropout_key)
  return prep, state


def _predict(job: _Job, prep: _Prepared, params, split_name: str, split):
  """(logits, metrics or None without labels) of one split."""
  c, task = job.c, job.task
  rows, segs = job.feats[split_name]
  out = []
  for s in range(0, len(rows), c.batch_size):
    idx = range(s, min(s + c.batch_size, len(rows)))
    batch = _batch(rows, segs, None, idx, c.batch_size, c.max_seq_length,
                   task.regression)
    out.append(np.asarray(prep.forward(params, jax.device_put(
        batch, prep.data_sh)))[:len(idx)])
  logits = np.concatenate(out).astype(np.float64)
  if split.labels is None:
    return logits, None
  labels = np.asarray(split.labels)
  if task.regression:
    preds = logits[:, 0]
    loss = np.mean((preds - labels) ** 2)
  else:
    preds = np.argmax(logits, -1)
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    loss = -np.mean(logp[np.arange(len(labels)), labels])
  loss = float(loss) if math.isfinite(loss) else None
  return logits, {"loss": loss, **compute_metrics(job.names, labels, preds)}


def _train(job: _Job, prep: _Prepared, state: dict
           ) -> tuple[dict, list[dict], np.ndarray]:
  """Epochs over the training split (seeded order), the dev split evaluated
  after each; returns the state, the epochs' records and the last dev
  logits."""
  c, task = job.c, job.task
  n_train, b = len(task.train), c.batch_size
  order = np.random.default_rng(c.seed)
  logging.info("Fine-tuning %s: %d train / %d dev examples, %d steps (%d "
               "warm-up), %d outputs, %d devices.", task.name, n_train,
               len(task.dev), prep.total, prep.warmup, task.num_outputs,
               len(job.devices))
  epochs, losses, step_i, epoch = [], [], 0, 0
  rows, segs = job.feats["train"]
  while step_i < prep.total:
    perm = order.permutation(n_train)
    epoch += 1
    for s in range(0, n_train, b):
      if step_i >= prep.total:
        break
      batch = _batch(rows, segs, task.train.labels, perm[s:s + b], b,
                     c.max_seq_length, task.regression)
      state, loss = prep.train_step(state, jax.device_put(batch, prep.data_sh),
                                    prep.lrs[step_i], prep.dropout_key)
      losses.append(loss)
      step_i += 1
    logits, dev = _predict(job, prep, state["params"], "dev", task.dev)
    epochs.append({"epoch": epoch, "step": step_i,
                   "train_loss": float(np.mean([float(l) for l in losses])),
                   "dev": dev})
    losses = []
    logging.info("epoch %d (step %d): %s", epoch, step_i, epochs[-1])
  return state, epochs, logits


def _write_outputs(job: _Job, prep: _Prepared, state: dict,
                   epochs: list[dict], logits: np.ndarray, t0: float) -> dict:
  """Predictions (dev, and test when there is one), their .meta.json and
  metrics.json, each written whole."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  c, task = job.c, job.task
  epath.Path(c.output_dir).mkdir(parents=True, exist_ok=True)
  meta_out = {"seed": job.run.meta.pretraining_seed(),
              "finetune_seed": int(c.seed), "task": task.name,
              "checkpoint": c.init_checkpoint,
              "checkpoint_step": int(job.run.step), "metric": job.names[0],
              "labels": task.labels}
  out = os.path.join
  # Each .meta.json goes first: a reader that finds predictions finds it.
  files = ["predictions.meta.json", "predictions.jsonl"]
  fileio.write_atomic(out(c.output_dir, "predictions.meta.json"), _json(meta_out))
  fileio.write_atomic(out(c.output_dir, "predictions.jsonl"),
         _prediction_lines(logits, task.dev.labels, task.regression))
  test_metrics = None
  if task.test is not None:
    test_logits, test_metrics = _predict(job, prep, state["params"], "test",
                                         task.test)
    fileio.write_atomic(out(c.output_dir, "test_predictions.meta.json"), _json(meta_out))
    fileio.write_atomic(out(c.output_dir, "test_predictions.jsonl"),
           _prediction_lines(test_logits, task.test.labels, task.regression))
    files += ["test_predictions.meta.json", "test_predictions.jsonl"]
  result = {**meta_out, "final": epochs[-1]["dev"], "epochs": epochs,
            "num_train": len(task.train), "num_dev": len(task.dev),
            "num_test": len(task.test) if task.test else 0,
            "steps": prep.total, "warmup_steps": prep.warmup,
            "max_seq_length": c.max_seq_length, "batch_size": c.batch_size,
            "learning_rate": c.learning_rate, "dropout": job.dropout,
            "seconds": round(time.perf_counter() - t0, 2)}
  if test_metrics:
    result["test"] = test_metrics
  files.append("metrics.json")
  fileio.write_atomic(out(c.output_dir, "metrics.json"), _json(result))
  return {**result, "output_dir": c.output_dir, "files": files}
