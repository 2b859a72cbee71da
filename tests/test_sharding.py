"""Mesh, rules and sharded initialisation on 8 CPU devices."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from bert_jax import evaluation
from bert_jax import losses
from bert_jax import models
from bert_jax import sharding
import tiny
from configs import bert as bert_config

CFG = tiny.model(vocab_size=256, hidden_size=64, num_attention_heads=4)


def _batch(seed=0, batch=8, seq=32, preds=5):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, CFG.vocab_size, (batch, seq)).astype(np.int32)
  mask = np.ones((batch, seq), np.int32)
  mask[:, seq - 4:] = 0
  return {"input_ids": ids * mask, "input_mask": mask,
          "segment_ids": (np.arange(seq)[None] > seq // 2).astype(np.int32) * mask,
          "masked_lm_positions": np.sort(rng.integers(1, seq - 4, (batch, preds)),
                                         1).astype(np.int32),
          "masked_lm_ids": rng.integers(5, CFG.vocab_size, (batch, preds)).astype(
              np.int32),
          "masked_lm_weights": np.ones((batch, preds), np.float32),
          "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype(np.int32)}


def _loss_fn(model):
  eval_step = evaluation.make_eval_step(model)  # Google's losses, deterministic
  return lambda params, batch: losses.losses_from_sums(
      eval_step(params, batch))["loss"]


def _init_fn(model):
  b = _batch()
  return lambda rng: model.init(rng, b["input_ids"], b["input_mask"],
                                b["segment_ids"], b["masked_lm_positions"])[
                                    "params"]


def test_mesh_shapes_and_errors():
  assert jax.device_count() == 8
  assert sharding.create_mesh().devices.shape == (8, 1, 1)
  assert sharding.create_mesh(data=2, fsdp=-1, tensor=2).devices.shape == (2, 2, 2)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.create_mesh(data=-1, fsdp=3)
  with pytest.raises(ValueError, match="uses 4 devices"):
    sharding.create_mesh(data=2, fsdp=2, tensor=1)
  with pytest.raises(ValueError, match="form 1 processes"):
    sharding.create_mesh(data=-1, dcn_data=2)
  with pytest.raises(ValueError, match="not divisible by mesh.dcn_data=3"):
    sharding.create_mesh(data=-1, fsdp=2, dcn_data=3)


def test_parameters_are_born_sharded_as_the_rules_say():
  model = models.BertForPreTraining(CFG)
  mesh = sharding.create_mesh(data=2, fsdp=2, tensor=2)
  params, shardings = sharding.init_sharded(_init_fn(model), mesh,
                                            jax.random.PRNGKey(0))
  flat = models.flat_param_names(params)
  q = flat["bert/encoder/layer_0/attention/self/query/kernel"]
  assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  shard_shapes = {s.data.shape for s in q.addressable_shards}
  assert shard_shapes == {(32, 32)}  # 64 × 64 split 2 × 2
  word = flat["bert/embeddings/word_embeddings/embedding"]
  assert word.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
  ln = flat["bert/embeddings/LayerNorm/scale"]
  assert ln.sharding.spec == jax.sharding.PartitionSpec("fsdp")
  assert jax.tree_util.tree_structure(shardings) == jax.tree_util.tree_structure(
      params)


def test_same_loss_and_grads_on_one_device_and_on_meshes():
  model = models.BertForPreTraining(CFG)
  batch = _batch(1)
  params = nn.unbox(_init_fn(model)(jax.random.PRNGKey(1)))
  loss_fn = _loss_fn(model)
  want_loss, want_grads = jax.value_and_grad(loss_fn)(params, batch)
  for shape in ((4, 2, 1), (4, 1, 2), (2, 2, 2)):
    mesh = sharding.create_mesh(*shape)
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
      sharded_params = jax.device_put(
          params, sharding.logical_sharding(
              mesh, jax.eval_shape(_init_fn(model), jax.random.PRNGKey(1))))
      sharded_batch = jax.device_put(batch, sharding.batch_sharding(mesh))
      loss, grads = jax.jit(jax.value_and_grad(loss_fn))(sharded_params,
                                                        sharded_batch)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(grads),
                    jax.tree_util.tree_leaves(want_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arg,shape", [("tiny", (2, 128, 2)),
                                       ("L-6_H-512", (6, 512, 8)),
                                       ("base", (12, 768, 12)),
                                       ("large", (24, 1024, 16))])
def test_config_presets(arg, shape):
  c = bert_config.get_config(arg)
  assert (c.model.num_hidden_layers, c.model.hidden_size,
          c.model.num_attention_heads) == shape
  assert c.model.intermediate_size == 4 * shape[1]
  assert c.phase1.num_steps + c.phase2.num_steps == 1_000_000
  assert (c.phase1.max_seq_length, c.phase2.max_seq_length) == (128, 512)
  c.phase2.learning_rate = 3e-5  # phases have independent peaks
  assert c.phase1.learning_rate == 1e-4
  models.BertConfig(**c.model.to_dict())


def test_config_rejects_unknown_sizes():
  with pytest.raises(ValueError, match="24 small"):
    bert_config.get_config("L-3_H-128")
  with pytest.raises(ValueError, match="unknown size"):
    bert_config.get_config("huge")
