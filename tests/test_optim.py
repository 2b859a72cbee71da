"""LAMB, Google's AdamW, exclusions and the schedule, against NumPy
re-statements of the published update rules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bert_jax import optim


def _params():
  rng = np.random.default_rng(0)
  return {
      "bert": {"encoder": {"layer_0": {
          "attention": {"self": {"query": {
              "kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}}},
          "output": {"LayerNorm": {
              "scale": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}}}},
               "embeddings": {"word_embeddings": {
                   "embedding": jnp.asarray(rng.normal(size=(5, 3)),
                                            jnp.float32)}}},
      "cls_predictions": {"output_bias": jnp.asarray(rng.normal(size=(5,)),
                                                     jnp.float32)},
  }


def _grads(seed):
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda p: jnp.asarray(rng.normal(size=p.shape) * 3, jnp.float32),
      _params())


def _flat(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_decay_mask_follows_googles_name_rules():
  mask = _flat(optim.decay_mask(_params()))
  assert mask == {
      "bert/encoder/layer_0/attention/self/query/kernel": True,
      "bert/encoder/layer_0/attention/self/query/bias": False,
      "bert/encoder/layer_0/output/LayerNorm/scale": False,
      "bert/encoder/layer_0/output/LayerNorm/bias": False,
      "bert/embeddings/word_embeddings/embedding": True,
      "cls_predictions/output_bias": False,
  }


def test_decay_mask_leaves_modernbert_norms_and_biases_undecayed():
  """ModernBERT's recipe decays neither norms nor biases; its norms are
  named `*_norm` (no `LayerNorm` in the path)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from bert_jax import modernbert  # pylint: disable=g-import-not-at-top
  cfg = modernbert.ModernBertConfig(
      vocab_size=64, hidden_size=16, intermediate_size=24,
      num_hidden_layers=2, num_attention_heads=2, norm_bias=True,
      attention_bias=True)
  ids = jax.ShapeDtypeStruct((1, 4), jnp.int32)
  shapes = nn.unbox(jax.eval_shape(
      lambda i: modernbert.ModernBertForMaskedLM(cfg).init(
          jax.random.PRNGKey(0), i, i, i, i), ids)["params"])
  mask = _flat(optim.decay_mask(shapes))
  undecayed = sorted(k for k, v in mask.items() if not v)
  assert "model/layers_1/attn_norm/scale" in undecayed
  assert "model/final_norm/bias" in undecayed
  assert "mlm/decoder_bias" in undecayed
  assert "model/layers_0/attn/Wqkv_bias" in undecayed
  assert all(("norm" in k or "bias" in k) for k in undecayed), undecayed
  for k in ("model/tok_embeddings/embedding", "model/layers_0/attn/Wqkv",
            "model/layers_1/mlp/Wi", "mlm/head_dense/kernel"):
    assert mask[k], k


def _reference(params, grads_seq, lr, wd, bias_correction, trust):
  """NumPy statement of the update rules (module docstring)."""
  p = _flat(params)
  decayed = _flat(optim.decay_mask(params))
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v2 = {k: np.zeros_like(v) for k, v in p.items()}
  for t, grads in enumerate(grads_seq, start=1):
    g = _flat(grads)
    norm = np.sqrt(sum((x.astype(np.float64) ** 2).sum() for x in g.values()))
    scale = min(1.0, 1.0 / norm)
    for k in p:
      gk = g[k] * scale
      m[k] = 0.9 * m[k] + 0.1 * gk
      v2[k] = 0.999 * v2[k] + 0.001 * gk * gk
      if bias_correction:
        u = (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v2[k] / (1 - 0.999 ** t)) + 1e-6)
      else:
        u = m[k] / (np.sqrt(v2[k]) + 1e-6)
      if decayed[k]:
        u = u + wd * p[k]
        if trust:
          wn, un = np.linalg.norm(p[k]), np.linalg.norm(u)
          u = u * (wn / un if wn > 0 and un > 0 else 1.0)
      p[k] = p[k] - lr * u
  return p


def _run(tx, params, grads_seq):
  state = tx.init(params)
  for g in grads_seq:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return _flat(params)


def test_lamb_matches_reference_with_exclusions():
  params, grads = _params(), [_grads(s) for s in (1, 2, 3)]
  got = _run(optim.lamb(0.01, weight_decay=0.1), params, grads)
  want = _reference(params, grads, 0.01, 0.1, bias_correction=True, trust=True)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-6,
                               err_msg=k)


def test_google_adamw_has_no_bias_correction():
  params, grads = _params(), [_grads(s) for s in (4, 5)]
  got = _run(optim.adamw_google(0.01, weight_decay=0.1), params, grads)
  want = _reference(params, grads, 0.01, 0.1, bias_correction=False,
                    trust=False)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-6,
                               err_msg=k)
  corrected = _reference(params, grads, 0.01, 0.1, bias_correction=True,
                         trust=False)
  k = "bert/encoder/layer_0/attention/self/query/kernel"
  assert np.abs(got[k] - corrected[k]).max() > 1e-3


def test_google_schedule():
  s = optim.google_schedule(1e-4, warmup_steps=100, total_steps=1000)
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(50)), 5e-5, rtol=1e-6)
  np.testing.assert_allclose(float(s(99)), 9.9e-5, rtol=1e-6)
  np.testing.assert_allclose(float(s(100)), 9e-5, rtol=1e-6)  # 1e-4·(1-.1)
  np.testing.assert_allclose(float(s(550)), 4.5e-5, rtol=1e-6)
  assert float(s(1000)) == 0.0 and float(s(2000)) == 0.0


def test_unknown_optimizer_is_named():
  import pytest  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="optimizer.name='sgd'"):
    optim.create("sgd", 0.1, 0.0, 0.9, 0.999, 1e-6, 1.0)


def test_adamw_equals_torch_adamw_with_berts_exclusions():
  """optimizer.name=adamw: torch.optim.AdamW (bias-corrected, decoupled
  decay lr·wd·w) with decay off for biases/LayerNorm and the global-norm clip
  before the update, step for step under a changing learning rate."""
  import torch  # pylint: disable=g-import-not-at-top
  params, lrs, wd = _params(), [1e-2, 5e-3, 2e-3, 1e-3], 0.1
  grads = [_grads(s) for s in range(len(lrs))]
  tx = optim.create("adamw", lambda c: jnp.asarray(lrs)[c], wd, 0.9, 0.999,
                    1e-6, 1.0)
  state, p = tx.init(params), params
  for g in grads:
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
  ours = _flat(p)
  decayed = _flat(optim.decay_mask(params))
  tp = {k: torch.tensor(v, requires_grad=True)
        for k, v in _flat(params).items()}
  opt = torch.optim.AdamW(
      [{"params": [tp[k] for k in tp if decayed[k]], "weight_decay": wd},
       {"params": [tp[k] for k in tp if not decayed[k]], "weight_decay": 0.0}],
      lr=lrs[0], betas=(0.9, 0.999), eps=1e-6)
  for lr, g in zip(lrs, grads):
    for k, v in _flat(g).items():
      tp[k].grad = torch.tensor(v)
    torch.nn.utils.clip_grad_norm_(list(tp.values()), 1.0)
    for group in opt.param_groups:
      group["lr"] = lr
    opt.step()
  for k, v in tp.items():
    np.testing.assert_allclose(ours[k], v.detach().numpy(), rtol=2e-5,
                               atol=2e-6, err_msg=k)


def test_linear_and_wsd_schedules():
  s = optim.schedule("linear", 1e-4, 100, 1000)  # Hugging Face's
  np.testing.assert_allclose([float(s(t)) for t in (0, 50, 100, 550, 1000)],
                             [0, 5e-5, 1e-4, 5e-5, 0], rtol=1e-6, atol=1e-12)
  w = optim.schedule("wsd", 1e-4, 100, 1000, decay_fraction=0.2)
  np.testing.assert_allclose(
      [float(w(t)) for t in (50, 100, 500, 800, 900, 1000, 1200)],
      [5e-5, 1e-4, 1e-4, 1e-4, 5e-5, 0, 0], rtol=1e-6, atol=1e-12)
  g = optim.schedule("google", 1e-4, 100, 1000)
  assert float(g(100)) == float(optim.google_schedule(1e-4, 100, 1000)(100))
  import pytest  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="schedule='cosine'"):
    optim.schedule("cosine", 1e-4, 100, 1000)
  with pytest.raises(ValueError, match="decay_fraction=0"):
    optim.schedule("wsd", 1e-4, 100, 1000, decay_fraction=0)
