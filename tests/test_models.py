"""The Flax BERT: Google's parameter names, and the same outputs as
`transformers.BertForPreTraining` given the same weights."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import losses
from bert_jax import models
import tiny

CFG = tiny.model(vocab_size=211, hidden_size=48, num_hidden_layers=3,
                 num_attention_heads=4, max_position_embeddings=40)


def _init(cfg=CFG, batch=3, seq=24, preds=5, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, cfg.vocab_size, (batch, seq)).astype(np.int32)
  lengths = rng.integers(seq // 2, seq + 1, batch)
  mask = (np.arange(seq)[None] < lengths[:, None]).astype(np.int32)
  seg = ((np.arange(seq)[None] > lengths[:, None] // 2) & (mask > 0)).astype(
      np.int32)
  pos = np.sort(rng.integers(1, seq // 2, (batch, preds)), axis=1).astype(
      np.int32)
  model = models.BertForPreTraining(cfg)
  params = nn.unbox(model.init(jax.random.PRNGKey(seed), ids, mask, seg,
                               pos)["params"])
  return model, params, (ids * mask, mask, seg, pos)


def test_parameter_names_are_googles():
  _, params, _ = _init()
  names = {models.google_name(k): v.shape
           for k, v in models.flat_param_names(params).items()}
  h, i, v = CFG.hidden_size, CFG.intermediate_size, CFG.vocab_size
  assert names["bert/embeddings/word_embeddings"] == (v, h)
  assert names["bert/embeddings/position_embeddings"] == (40, h)
  assert names["bert/embeddings/token_type_embeddings"] == (2, h)
  assert names["bert/encoder/layer_2/attention/self/query/kernel"] == (h, h)
  assert names["bert/encoder/layer_0/intermediate/dense/kernel"] == (h, i)
  assert names["bert/encoder/layer_1/output/LayerNorm/gamma"] == (h,)
  assert names["cls/predictions/output_bias"] == (v,)
  assert names["cls/seq_relationship/output_weights"] == (2, h)
  # Google's count: 5 embedding + 16 per layer + 2 pooler + 7 head variables.
  assert len(names) == 5 + 16 * CFG.num_hidden_layers + 2 + 7


def test_initialisation_is_truncated_normal_002():
  cfg = models.BertConfig(vocab_size=4000, hidden_size=128,
                          num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=512)
  _, params, _ = _init(cfg)
  flat = {models.google_name(k): np.asarray(v)
          for k, v in models.flat_param_names(params).items()}
  w = flat["bert/embeddings/word_embeddings"]
  assert np.abs(w).max() <= 0.04 + 1e-6  # cut at two standard deviations
  assert abs(w.std() - 0.02 * 0.8796) < 0.0005  # std of N(0, .02) cut at 2σ
  assert not flat["bert/encoder/layer_0/attention/self/query/bias"].any()
  assert (flat["bert/embeddings/LayerNorm/gamma"] == 1).all()
  # model.initializer=normal: transformers' plain N(0, 0.02), tails included.
  cfg = dataclasses.replace(cfg, initializer="normal")
  w = {models.google_name(k): np.asarray(v) for k, v in
       models.flat_param_names(_init(cfg)[1]).items()}[
           "bert/embeddings/word_embeddings"]
  assert abs(w.std() - 0.02) < 0.0005 and np.abs(w).max() > 0.06
  with pytest.raises(ValueError, match="model.initializer='xavier'"):
    dataclasses.replace(cfg, initializer="xavier")


def _to_hf(params, cfg, hidden_act):
  """Our params into a transformers BertForPreTraining."""
  hf_cfg = transformers.BertConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_hidden_layers,
      num_attention_heads=cfg.num_attention_heads,
      intermediate_size=cfg.intermediate_size, hidden_act=hidden_act,
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
      max_position_embeddings=cfg.max_position_embeddings,
      type_vocab_size=cfg.type_vocab_size, layer_norm_eps=1e-12)
  model = transformers.BertForPreTraining(hf_cfg).eval()
  state = {}
  for path, value in models.flat_param_names(params).items():
    name = models.google_name(path)
    value = torch.tensor(np.asarray(value))
    hf = name.replace("/", ".").replace("layer_", "layer.")
    hf = hf.replace("LayerNorm.gamma", "LayerNorm.weight")
    hf = hf.replace("LayerNorm.beta", "LayerNorm.bias")
    if hf.endswith(".kernel"):
      hf, value = hf[:-len("kernel")] + "weight", value.T
    elif hf.endswith("_embeddings"):
      hf += ".weight"
    hf = hf.replace("cls.predictions.output_bias", "cls.predictions.bias")
    hf = hf.replace("seq_relationship.output_weights", "seq_relationship.weight")
    hf = hf.replace("seq_relationship.output_bias", "seq_relationship.bias")
    state[hf] = value
  state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
  missing, unexpected = model.load_state_dict(state, strict=False)
  assert not unexpected, unexpected
  assert set(missing) <= {"cls.predictions.decoder.weight",
                          "bert.embeddings.position_ids"}, missing
  model.tie_weights()
  return model


@pytest.mark.parametrize("act,hf_act", [("gelu", "gelu_new"),
                                        ("gelu_exact", "gelu")])
def test_matches_transformers(act, hf_act):
  cfg = models.BertConfig(**{**CFG.__dict__, "hidden_act": act})
  model, params, (ids, mask, seg, pos) = _init(cfg)
  mlm, nsp = model.apply({"params": params}, ids, mask, seg, pos)
  hf = _to_hf(params, cfg, hf_act)
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(ids, dtype=torch.long),
             attention_mask=torch.tensor(mask, dtype=torch.long),
             token_type_ids=torch.tensor(seg, dtype=torch.long))
  want_mlm = np.take_along_axis(out.prediction_logits.numpy(),
                                pos[..., None].astype(np.int64), axis=1)
  np.testing.assert_allclose(mlm, want_mlm, atol=2e-4, rtol=1e-4)
  np.testing.assert_allclose(nsp, out.seq_relationship_logits.numpy(),
                             atol=2e-4, rtol=1e-4)


def test_padding_does_not_change_real_tokens():
  model, params, (ids, mask, seg, pos) = _init()
  bert = models.Bert(CFG)
  p = {"params": params["bert"]}
  seq, _ = bert.apply(p, ids, mask, seg)
  ids2 = np.where(mask > 0, ids, 7)  # different content under the padding
  seq2, _ = bert.apply(p, ids2, mask, seg)
  real = mask > 0
  np.testing.assert_allclose(np.asarray(seq)[real], np.asarray(seq2)[real],
                             atol=1e-5)
  del model, pos


def test_bfloat16_and_remat_stay_close_to_float32():
  model, params, batch = _init()
  ref, _ = model.apply({"params": params}, *batch)
  for kw in ({"dtype": "bfloat16"}, {"remat": "full"}, {"remat": "dots"},
             {"attention": "dot_product"}):
    cfg = models.BertConfig(**{**CFG.__dict__, **kw})
    got, _ = models.BertForPreTraining(cfg).apply({"params": params}, *batch)
    tol = 0.15 if kw.get("dtype") else 1e-4
    np.testing.assert_allclose(got, ref, atol=tol, rtol=tol)


def test_bfloat16_training_gradients_run_and_stay_close():
  """The training path in bf16 (decoder + cross-entropy with hand-written
  VJPs) compiles on CPU and stays near the float32 loss and gradients."""
  model, params, batch = _init()
  labels = jnp.asarray(np.random.default_rng(2).integers(0, 211, (3, 5)),
                       jnp.int32)

  def loss(p, m):
    (nll, _), _ = m.apply({"params": p}, *batch, masked_lm_ids=labels)
    return jnp.mean(nll)
  bf16 = models.BertForPreTraining(
      models.BertConfig(**{**CFG.__dict__, "dtype": "bfloat16"}))
  want, want_g = jax.jit(jax.value_and_grad(loss), static_argnums=1)(
      params, model)
  got, got_g = jax.jit(jax.value_and_grad(loss), static_argnums=1)(
      params, bf16)
  np.testing.assert_allclose(got, want, rtol=2e-2)
  emb = ("bert", "embeddings", "word_embeddings", "embedding")
  g, w = got_g, want_g
  for k in emb:
    g, w = g[k], w[k]
  assert g.dtype == jnp.float32
  np.testing.assert_allclose(g, w, atol=0.05 * float(jnp.max(jnp.abs(w))))


def test_bad_config_and_inputs():
  with pytest.raises(ValueError, match="not divisible"):
    models.BertConfig(hidden_size=50, num_attention_heads=4)
  with pytest.raises(ValueError, match="hidden_act"):
    models.BertConfig(hidden_act="swish")
  model, params, (ids, mask, seg, pos) = _init()
  long = jnp.zeros((1, 41), jnp.int32)
  with pytest.raises(ValueError, match="max_position_embeddings=40"):
    model.apply({"params": params}, long, long, long, pos[:1])


def _plain_losses(params, model, inputs, labels, weights, nsp_labels):
  """Google's losses by plain autodiff: einsum decoder, log_softmax, argmax."""
  mlm, nsp = model.apply({"params": params}, *inputs)
  table = params["bert"]["embeddings"]["word_embeddings"]["embedding"]
  del mlm
  seq, _ = models.Bert(model.cfg).apply({"params": params["bert"]},
                                        *inputs[:3])
  head = params["cls_predictions"]
  h = jnp.take_along_axis(seq, inputs[3][..., None], axis=1)
  h = h @ head["transform_dense"]["kernel"] + head["transform_dense"]["bias"]
  h = jax.nn.gelu(h, approximate=True)
  mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
  ln = head["transform_LayerNorm"]
  h = (h - mu) / jnp.sqrt(var + 1e-12) * ln["scale"] + ln["bias"]
  logits = jnp.einsum("bph,vh->bpv", h, table) + head["output_bias"]
  logp = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(logp, labels[..., None], -1)[..., 0]
  mlm_loss = jnp.sum(weights * nll) / (jnp.sum(weights) + 1e-5)
  nsp_loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(nsp),
                                           nsp_labels, -1))
  acc = jnp.sum(weights * (jnp.argmax(logits, -1) == labels)) / (
      jnp.sum(weights) + 1e-5)
  return mlm_loss + nsp_loss, acc


def test_fused_mlm_loss_and_gradients_equal_plain_autodiff():
  """The training path (decoder + cross-entropy with hand-written VJPs) and
  the logits path give the loss, accuracy and every gradient of the plain
  formulation."""
  model, params, inputs = _init()
  rng = np.random.default_rng(1)
  labels = jnp.asarray(rng.integers(0, CFG.vocab_size, (3, 5)), jnp.int32)
  weights = jnp.asarray(rng.random((3, 5)) > 0.3, jnp.float32)
  nsp_labels = jnp.asarray(rng.integers(0, 2, (3, 1)), jnp.int32)

  def ours(p, fused):
    mlm, nsp = model.apply({"params": p}, *inputs,
                           masked_lm_ids=labels if fused else None)
    m = losses.pretraining_losses(mlm, nsp, labels, weights, nsp_labels)
    return m["loss"], m["mlm_accuracy"]

  (want, want_acc), want_g = jax.jit(jax.value_and_grad(
      lambda p: _plain_losses(p, model, inputs, labels, weights, nsp_labels),
      has_aux=True))(params)
  for fused in (True, False):
    (got, acc), g = jax.jit(jax.value_and_grad(ours, has_aux=True),
                            static_argnums=1)(params, fused)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(acc) == float(want_acc)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g),
                            jax.tree_util.tree_leaves(want_g)):
      scale = float(jnp.max(jnp.abs(b))) + 1e-3  # key biases: grad ≈ 0
      np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale,
                                 atol=2e-5, err_msg=str(path))


def test_dense_on_flattened_rows_equals_flax_dense():
  """`models._dense` (dot on the rows flattened to 2-D) gives nn.Dense's
  output and gradients, and its kernel gradient contracts both operands'
  rows in place: no transposed copy of the output gradient (a 3-D dot gets
  one on XLA:CPU)."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 64)),
                  jnp.float32)
  ours = models._dense(CFG, 48, ("embed", "mlp"), "d")
  plain = nn.Dense(48)
  params = nn.unbox(ours.init(jax.random.PRNGKey(0), x))

  def loss(p, layer, x):
    return jnp.sum(jnp.sin(layer.apply(p, x)))

  for layer in (ours, plain):
    np.testing.assert_allclose(layer.apply(params, x),
                               plain.apply(params, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.apply(params, x[0]),
                               plain.apply(params, x[0]), rtol=1e-6, atol=1e-6)
  got = jax.grad(loss, argnums=(0, 2))(params, ours, x)
  want = jax.grad(loss, argnums=(0, 2))(params, plain, x)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  hlo = jax.jit(jax.grad(loss), static_argnums=1).lower(
      params, ours, x).compile().as_text()
  assert "lhs_contracting_dims={0}, rhs_contracting_dims={0}" in hlo, hlo


def test_dropout_prng_choices():
  """config.dropout_prng: every implementation drives Flax dropout
  deterministically (same key → same masks), each with its own masks."""
  from bert_jax import train_step  # pylint: disable=g-import-not-at-top
  cfg = models.BertConfig(**{**CFG.__dict__, "hidden_dropout_prob": 0.5})
  model, params, inputs = _init(cfg)

  def out(prng):
    key = jax.random.fold_in(train_step.dropout_key(3, prng), 7)
    return np.asarray(model.apply({"params": params}, *inputs,
                                  deterministic=False,
                                  rngs={"dropout": key})[0])
  outs = {p: out(p) for p in ("threefry2x32", "rbg", "unsafe_rbg")}
  for p, o in outs.items():
    np.testing.assert_array_equal(o, out(p))
  assert not np.allclose(outs["threefry2x32"], outs["rbg"])
  with pytest.raises(ValueError, match="config.dropout_prng='philox'"):
    train_step.dropout_key(0, "philox")


def test_dropout16_rate_scale_determinism_and_mesh_independence():
  """models.Dropout16: drops 10% (quantised to 1/65536), scales the rest by
  1/0.9, is deterministic per key, and gives the same mask on any sharding;
  odd widths and non-threefry keys fall back to nn.Dropout."""
  drop = models.Dropout16(0.1)
  x = jnp.ones((16, 8, 64, 64), jnp.float32)
  f = jax.jit(lambda x, k: drop.apply({}, x, False, rngs={"dropout": k}))
  y = np.asarray(f(x, jax.random.PRNGKey(1)))
  kept = y != 0
  assert abs(1 - kept.mean() - 6554 / 65536) < 0.003  # 524,288 draws
  np.testing.assert_allclose(y[kept], 1 / 0.9, rtol=1e-6)
  # Each of a block's four 16-bit draws is used: no position is favoured.
  per_lane = 1 - kept.reshape(-1, 4).mean(0)
  assert np.all(np.abs(per_lane - 0.1) < 0.005), per_lane
  np.testing.assert_array_equal(y, np.asarray(f(x, jax.random.PRNGKey(1))))
  assert (y != np.asarray(f(x, jax.random.PRNGKey(2)))).mean() > 0.1
  mesh = jax.make_mesh((4, 2), ("a", "b"))
  sharded = jax.device_put(x, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("a", "b")))
  np.testing.assert_array_equal(np.asarray(f(sharded, jax.random.PRNGKey(1))),
                                y)
  # Fallbacks (Bernoulli draws): a width not divisible by 4, an rbg key.
  for v, key in ((jnp.ones((64, 6)), jax.random.PRNGKey(0)),
                 (x, jax.random.key(0, impl="rbg"))):
    out = np.asarray(drop.apply({}, v, False, rngs={"dropout": key}))
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.9], rtol=1e-6)
  with pytest.raises(ValueError, match="dropout_bits=8"):
    models.BertConfig(dropout_bits=8)
