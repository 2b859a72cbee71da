"""`config.cpu_dots`: which XLA:CPU matmul library the steps compile with."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from bert_jax import models
from bert_jax import xla_cpu


def test_choice_platform_and_size_decide_the_options():
  assert xla_cpu.compiler_options("auto", 768, "cpu") == xla_cpu.ONEDNN_DOTS
  assert xla_cpu.compiler_options("auto", 256, "cpu") == xla_cpu.ONEDNN_DOTS
  assert xla_cpu.compiler_options("auto", 128, "cpu") is None
  assert xla_cpu.compiler_options("onednn", 128, "cpu") == xla_cpu.ONEDNN_DOTS
  assert xla_cpu.compiler_options("ynn", 768, "cpu") is None
  for platform in ("gpu", "tpu"):
    assert xla_cpu.compiler_options("onednn", 768, platform) is None
  with pytest.raises(ValueError, match="config.cpu_dots='mkl'"):
    xla_cpu.compiler_options("mkl", 768, "gpu")


def test_onednn_dots_take_effect_and_compute_the_same_gradients():
  cfg = models.BertConfig(vocab_size=97, hidden_size=64, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=128,
                          max_position_embeddings=16)
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 97, (4, 16)).astype(np.int32)
  mask, seg = np.ones_like(ids), np.zeros_like(ids)
  pos = np.tile(np.arange(1, 4, dtype=np.int32), (4, 1))
  model = models.BertForPreTraining(cfg)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), ids, mask, seg,
                               pos)["params"])

  def loss(p):
    mlm, nsp = model.apply({"params": p}, ids, mask, seg, pos,
                           deterministic=True)
    return (mlm ** 2).mean() + (nsp ** 2).mean()

  grads = {}
  for choice in ("ynn", "onednn"):
    opts = xla_cpu.compiler_options(choice, cfg.hidden_size, "cpu")
    step = jax.jit(jax.value_and_grad(loss), compiler_options=opts)
    hlo = step.lower(params).compile().as_text()
    # The options must reach XLA (a renamed flag would be ignored silently).
    assert ("__onednn_fusion" in hlo) == (choice == "onednn"), choice
    grads[choice] = step(params)
  for a, b in zip(jax.tree_util.tree_leaves(grads["ynn"]),
                  jax.tree_util.tree_leaves(grads["onednn"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
