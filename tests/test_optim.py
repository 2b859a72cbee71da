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
