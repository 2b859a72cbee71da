"""What `bert_jax.xla_cpu.probe` compiles, in its own child process.

Each kind of computation the project jits — the bare attention pattern, the
pretraining train step (forward + backward + LAMB, dropout on) and eval step,
fine-tuning's train step and forward, feature extraction — is compiled and run
with a `cpu_dots` choice's XLA:CPU options and with XLA's defaults, at two model shapes
(hidden 256 / 4 heads, hidden 384 / 12 heads); results must agree. A crash
(XLA aborts the process on some CPUs) or a mismatch fails the probe.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = ((256, 4), (384, 12))  # (hidden size, heads)
SEQ, PREDS, BATCH, VOCAB = 32, 5, 4, 512


def _agree(name: str, a, b) -> None:
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if not np.allclose(x, y, rtol=2e-3, atol=2e-4):
      raise AssertionError(f"{name}: results differ from XLA's defaults "
                           f"(max abs difference {np.abs(x - y).max():.3g}).")


def _batch(rng) -> dict:
  ids = rng.integers(5, VOCAB, (BATCH, SEQ)).astype(np.int32)
  return {"input_ids": ids, "input_mask": np.ones_like(ids),
          "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype(np.int32)
                         * np.ones_like(ids),
          "masked_lm_positions": np.tile(np.arange(1, PREDS + 1, dtype=np.int32),
                                         (BATCH, 1)),
          "masked_lm_ids": rng.integers(5, VOCAB, (BATCH, PREDS)).astype(
              np.int32),
          "masked_lm_weights": np.ones((BATCH, PREDS), np.float32),
          "next_sentence_labels": rng.integers(0, 2, (BATCH, 1)).astype(
              np.int32)}


def attention(dots: str) -> None:
  options = _options(dots)
  a = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 64)),
                  jnp.float32)
  f = lambda a: jnp.einsum("bqk,bkh->bqh", jax.nn.softmax(
      jnp.einsum("bqh,bkh->bqk", a, a)), a)
  _agree("attention", jax.jit(f, compiler_options=options)(a), jax.jit(f)(a))
  g = jax.grad(lambda a: f(a).sum())
  _agree("attention gradient", jax.jit(g, compiler_options=options)(a),
         jax.jit(g)(a))


def _options(dots: str):
  from bert_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  return xla_cpu.compiler_options(dots, xla_cpu.ONEDNN_FROM_HIDDEN, "cpu")


def pretraining(cfg, dots: str) -> dict:
  """Train and eval steps; returns the parameters for the other probes."""
  options = _options(dots)
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from bert_jax import evaluation  # pylint: disable=g-import-not-at-top
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  from bert_jax import optim  # pylint: disable=g-import-not-at-top
  from bert_jax import train_step  # pylint: disable=g-import-not-at-top
  model = models.BertForPreTraining(cfg)
  batch = _batch(np.random.default_rng(1))
  params = nn.unbox(model.init(
      jax.random.PRNGKey(0), batch["input_ids"], batch["input_mask"],
      batch["segment_ids"], batch["masked_lm_positions"])["params"])
  tx = optim.create("lamb", 1e-3, 0.01, 0.9, 0.999, 1e-6, 1.0)
  state = {"params": params, "opt_state": tx.init(params),
           "global_step": jnp.zeros((), jnp.int32)}
  step = train_step.make_train_step(model, tx, 1, 0)
  _agree("pretraining train step",
         jax.jit(step, compiler_options=options)(state, batch),
         jax.jit(step)(state, batch))
  ev = evaluation.make_eval_step(model)
  _agree("pretraining eval step",
         jax.jit(ev, compiler_options=options)(params, batch),
         jax.jit(ev)(params, batch))
  return params


def finetuning(cfg, params, dots: str) -> None:
  from bert_jax.downstream import finetune  # pylint: disable=g-import-not-at-top
  from bert_jax import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.create_mesh(-1, devices=jax.local_devices()[:1])
  b = _batch(np.random.default_rng(2))
  batch = {k: b[k] for k in ("input_ids", "input_mask", "segment_ids")}
  batch.update(label=b["next_sentence_labels"][:, 0],
               weight=np.ones((BATCH,), np.float32))
  out = {}
  for name in (dots, "default"):
    model, init_opt, step, forward = finetune._steps(  # pylint: disable=protected-access
        cfg, 2, 0.1, False, 0.01, 1.0, mesh,
        dots if name == dots else "ynn")
    encoder = jax.tree_util.tree_map(jnp.copy, {"bert": params["bert"]})
    p = finetune.init_params(model, encoder, jax.random.PRNGKey(3))
    state = {"params": p, "opt_state": init_opt(p),
             "step": jnp.zeros((), jnp.int32)}
    out[name] = (forward(p, batch), step(state, batch, 1e-4,
                                        jax.random.PRNGKey(4)))
  _agree("fine-tuning steps", out[dots], out["default"])


def extraction(cfg, params, dots: str) -> None:
  from bert_jax.downstream import features  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(5)
  rows = [list(rng.integers(5, VOCAB, n)) for n in (SEQ, SEQ // 2, 3)]
  segs = [[0] * len(r) for r in rows]
  out = [list(features.extract(params, cfg, rows, segs, [-1, 0], SEQ, 2, d))
         for d in (dots, "ynn")]
  _agree("feature extraction", out[0], out[1])


def run(dots: str) -> None:
  """Raises (or XLA aborts the process) where `dots` (a `cpu_dots` choice)
  fails to compile or run any of the computations."""
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  attention(dots)
  for hidden, heads in SHAPES:
    cfg = models.BertConfig(vocab_size=VOCAB, hidden_size=hidden,
                            num_hidden_layers=1, num_attention_heads=heads,
                            intermediate_size=4 * hidden,
                            max_position_embeddings=SEQ)
    params = pretraining(cfg, dots)
    finetuning(cfg, params, dots)
    extraction(cfg, params, dots)


if __name__ == "__main__":
  # `python -m bert_jax.xla_cpu_probe [onednn|ynn]`, as `xla_cpu.probe`
  # starts it (ynn checks the probe itself).
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from bert_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  os.environ[xla_cpu.IN_PROBE] = "1"  # the computations must not probe again
  run(sys.argv[1] if len(sys.argv) > 1 else "onednn")
  print("probe passed")
