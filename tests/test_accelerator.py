"""Checks that need a GPU or TPU (skipped on CPU): cuDNN attention against
XLA's, a bfloat16 training step, masks drawn on the accelerator equal to
the CPU's. `bench/device_check.sh` runs them first on a lent machine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(jax.default_backend() == "cpu",
                                reason="needs a GPU or TPU")


def _batch(vocab, seq, preds, batch, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(seq // 4, seq + 1, batch)
  mask = (np.arange(seq)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1000, vocab, (batch, seq)) * mask
  ids[:, 0] = 101
  pos = np.sort(rng.integers(1, seq // 4, (batch, preds)), axis=1)
  return {"input_ids": jnp.asarray(ids, jnp.int32),
          "input_mask": jnp.asarray(mask),
          "segment_ids": jnp.zeros((batch, seq), jnp.int32),
          "masked_lm_positions": jnp.asarray(pos, jnp.int32),
          "masked_lm_ids": jnp.asarray(rng.integers(1000, vocab,
                                                    (batch, preds)), jnp.int32),
          "masked_lm_weights": jnp.ones((batch, preds), jnp.float32),
          "next_sentence_labels": jnp.asarray(rng.integers(0, 2, (batch, 1)),
                                              jnp.int32)}


def _model(attention, dtype="bfloat16", layers=2, hidden=256):
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  return models.BertForPreTraining(models.BertConfig(
      vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
      num_attention_heads=hidden // 64, intermediate_size=4 * hidden,
      max_position_embeddings=512, dtype=dtype, attention=attention,
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN is GPU's")
def test_cudnn_attention_matches_xla_on_padded_rows():
  b = _batch(30522, 128, 20, 8)
  xla = _model("xla")
  params = xla.init(jax.random.PRNGKey(0), b["input_ids"], b["input_mask"],
                    b["segment_ids"], b["masked_lm_positions"])["params"]
  outs = [np.asarray(jax.jit(_model(a).apply)(
      {"params": params}, b["input_ids"], b["input_mask"], b["segment_ids"],
      b["masked_lm_positions"])[0], np.float32) for a in ("xla", "cudnn")]
  scale = np.abs(outs[0]).max()
  assert np.abs(outs[0] - outs[1]).max() < 0.03 * scale  # bfloat16 rounding


def test_bfloat16_training_steps_are_finite_and_learn():
  from bert_jax import optim  # pylint: disable=g-import-not-at-top
  from bert_jax import train_step  # pylint: disable=g-import-not-at-top
  b = _batch(30522, 128, 20, 32)
  model = _model("cudnn" if jax.default_backend() == "gpu" else "xla")
  params = model.init(jax.random.PRNGKey(0), b["input_ids"], b["input_mask"],
                      b["segment_ids"], b["masked_lm_positions"])["params"]
  tx = optim.lamb(optim.google_schedule(1e-3, 2, 50))
  state = {"params": params, "opt_state": tx.init(params),
           "global_step": jnp.asarray(0, jnp.int32)}
  step = jax.jit(train_step.make_train_step(model, tx, 1, 0),
                 donate_argnums=0)
  losses = []
  for _ in range(12):  # one batch, again and again: the loss must fall
    state, m = step(state, b)
    losses.append(float(m["loss"]))
  assert np.all(np.isfinite(losses)) and int(m["nonfinite"]) == 0
  assert losses[-1] < 0.8 * losses[0]


def test_dynamic_masks_on_the_accelerator_equal_the_cpus():
  from bert_jax import dynamic_masking as dm  # pylint: disable=g-import-not-at-top
  b = _batch(30522, 128, 20, 16)
  spec = dm.MaskSpec(20, 30522, 103, (0, 101, 102), rate=0.3)
  fn = lambda k, x: dm.apply(jax.random.fold_in(k, 7), x, spec)
  key = jax.random.PRNGKey(3)
  on_device = jax.jit(fn)(key, b)
  cpu = jax.devices("cpu")[0]
  on_cpu = jax.jit(fn, device=cpu)(jax.device_put(key, cpu),
                                   jax.device_put(b, cpu))
  for k in on_device:
    np.testing.assert_array_equal(np.asarray(on_device[k]),
                                  np.asarray(on_cpu[k]))
