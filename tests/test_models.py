"""The Flax BERT: Google's parameter names, and the same outputs as
`transformers.BertForPreTraining` given the same weights."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import models

CFG = models.BertConfig(vocab_size=211, hidden_size=48, num_hidden_layers=3,
                        num_attention_heads=4, intermediate_size=96,
                        max_position_embeddings=40, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)


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


def test_bad_config_and_inputs():
  with pytest.raises(ValueError, match="not divisible"):
    models.BertConfig(hidden_size=50, num_attention_heads=4)
  with pytest.raises(ValueError, match="hidden_act"):
    models.BertConfig(hidden_act="swish")
  model, params, (ids, mask, seg, pos) = _init()
  long = jnp.zeros((1, 41), jnp.int32)
  with pytest.raises(ValueError, match="max_position_embeddings=40"):
    model.apply({"params": params}, long, long, long, pos[:1])
