r"""Held-out evaluation against training throughput, and where eval time goes.

    python -m bench.eval_bench --size=tiny --batch=64 --eval_batches=64

Shards: `--files`, or `common.make_shards` (seq 128, default corpus, real
vocab). Times, in one process, after compiling: training steps
(`train_step.make_train_step`, as the trainer jits it) in examples/s; a warm
`evaluation.HeldOut` call as the trainer makes it (examples already in host
memory; transfer, forward, sums back on the host), unpacked and with
`eval_packing`; and the parts — the tf.data eval pipeline alone, and the
jitted eval step alone on one resident batch. Evaluation is forward-only, so
it should run at several times the training rate. Prints the two
evaluations' metrics too: packing must not change them."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp

from bench import common
from bert_jax import evaluation
from bert_jax import input_pipeline
from bert_jax import models
from bert_jax import settings
from bert_jax import sharding
from bert_jax import train
from bert_jax import train_step
from configs import bert as bert_config


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--size", default="tiny")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--eval_batches", type=int, default=64)
  p.add_argument("--train_steps", type=int, default=10)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--packing", type=int, default=4, help="eval_packing")
  p.add_argument("--corpus_mb", type=float, default=3.0)
  p.add_argument("--files", default="", help="shards (default: common.make_shards')")
  p.add_argument("--vocab_size", type=int, default=30522)
  p.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(),
                                                    "bert_jax_bench"))
  a = p.parse_args()
  os.makedirs(a.work_dir, exist_ok=True)
  files = a.files or common.make_shards(a.work_dir, a.corpus_mb, 2)
  config = bert_config.get_config(a.size)
  config.model.vocab_size = a.vocab_size
  config.phase1.update(train_files=files, global_batch_size=a.batch)
  config.update(eval_batch_size=a.batch, eval_steps=a.eval_batches)
  mesh = sharding.create_mesh(-1)
  cfg = models.BertConfig(**config.model.to_dict())
  model = models.BertForPreTraining(cfg)
  s = settings.read(config)
  phase = s.phases[0]
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    params, _ = train._init_params(model, phase, mesh, 0)  # pylint: disable=protected-access
    tx = train.make_optimizer(s.optimizer, phase, 0)
    state = {"params": params, "opt_state": jax.jit(tx.init)(params),
             "global_step": jnp.zeros((), jnp.int32)}
    spec = input_pipeline.DataSpec(files, 128, 20, a.batch)
    batches = list(input_pipeline.global_batches(
        input_pipeline.host_dataset(spec, 0, training=False).take(
            max(a.train_steps, 1)), sharding.batch_sharding(mesh)))
    step = jax.jit(train_step.make_train_step(model, tx, 1, 0), donate_argnums=0)
    state, m = step(state, batches[0])
    jax.block_until_ready(m)

    def train_run():
      nonlocal state
      for b in batches[:a.train_steps]:
        state, out = step(state, b)
      jax.block_until_ready(out)
    t_train = common.best_seconds(train_run, a.repeats) / a.train_steps

    eval_step = jax.jit(evaluation.make_eval_step(model))
    evals, metrics = {}, {}
    for k in (0, a.packing):
      held_out = evaluation.HeldOut(eval_step, files, phase,
                                    dataclasses.replace(s, eval_packing=k),
                                    mesh)
      metrics[k] = held_out(state["params"])  # reads the examples, compiles
      evals[k] = common.best_seconds(lambda: held_out(state["params"]), a.repeats)
    n = metrics[0]["eval_examples"]

    def pipeline_only():
      ds = input_pipeline.host_dataset(spec, 0, training=False).take(
          a.eval_batches)
      for _ in input_pipeline.global_batches(ds, sharding.batch_sharding(mesh)):
        pass
    t_pipe = common.best_seconds(pipeline_only, a.repeats) / a.eval_batches

    def forward_only():
      for _ in range(a.eval_batches):
        out = eval_step(state["params"], batches[0])
      jax.block_until_ready(out)
    t_fwd = common.best_seconds(forward_only, a.repeats) / a.eval_batches

  train_rate = a.batch / t_train
  print(f"{a.size} seq 128 batch {a.batch}, {n:.0f} held-out examples, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
  print("| what | ms per batch of examples | examples/s | vs training |")
  print("|---|---|---|---|")
  rows = [("training step", t_train),
          ("evaluation, unpacked", evals[0] / (n / a.batch)),
          (f"evaluation, eval_packing={a.packing}", evals[a.packing] /
           (n / a.batch)),
          ("eval pipeline alone (unpacked, tf.data)", t_pipe),
          ("eval step alone (one resident unpacked batch)", t_fwd)]
  for name, t in rows:
    print(f"| {name} | {t * 1e3:,.1f} | {a.batch / t:,.0f} | "
          f"{a.batch / t / train_rate:.2f}× |")
  for k in ("eval_mlm_accuracy", "eval_mlm_loss", "eval_nsp_accuracy",
            "eval_nsp_loss"):
    print(f"{k}: unpacked {metrics[0][k]:.6f}, packed "
          f"{metrics[a.packing][k]:.6f}")

if __name__ == "__main__":
  main()
