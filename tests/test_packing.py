"""Sequence packing: every example kept once, the model keeps packed examples
apart exactly, the packed pipeline is deterministic and resumes exactly.
(Packed training and its bitwise resume: phase 2 of tests/test_train.py.)"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import input_pipeline
from bert_jax import losses
from bert_jax import models
from bert_jax import packing
from data_prep import job
from data_prep import pipeline
import tiny

S, P = 32, 5


def _examples(n, seed=0, vocab=211):
  """n examples in Google's layout: real tokens and predictions first."""
  rng = np.random.default_rng(seed)
  lengths = np.where(rng.random(n) < 0.3, S, rng.integers(4, S, n))
  mask = (np.arange(S) < lengths[:, None]).astype(np.int32)
  preds = np.minimum(P, np.maximum(1, np.round(lengths * 0.15))).astype(int)
  w = (np.arange(P) < preds[:, None]).astype(np.float32)
  pos = np.stack([np.sort(rng.choice(np.arange(1, l), P, replace=l - 1 < P))
                  for l in lengths]) * (w > 0)
  seg = mask * (np.arange(S) >= lengths[:, None] // 2)
  return {"input_ids": rng.integers(1, vocab, (n, S)).astype(np.int32) * mask,
          "input_mask": mask, "segment_ids": seg.astype(np.int32),
          "masked_lm_positions": pos.astype(np.int32),
          "masked_lm_ids": (rng.integers(1, vocab, (n, P)) * (w > 0)).astype(
              np.int32),
          "masked_lm_weights": w,
          "next_sentence_labels": rng.integers(0, 2, (n, 1)).astype(np.int32)}


def _key(ex):
  return b"".join(np.asarray(ex[k]).astype(np.int64).tobytes()
                  for k in sorted(ex))


def _split(examples, size):
  n = len(examples["input_ids"])
  return [{k: v[i:i + size] for k, v in examples.items()}
          for i in range(0, n, size)]


def test_every_example_is_packed_once_within_the_limits():
  ex = _examples(300)
  batches = list(packing.pack(_split(ex, 64), S, P, max_per_row=3,
                              rows_per_batch=1, open_rows=8))
  got = [e for b in batches for e in packing.unpack(b)]
  want = [{k: v[i] for k, v in ex.items()} for i in range(300)]
  assert sorted(map(_key, got)) == sorted(map(_key, want))
  rows = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert rows["input_mask"].sum() == ex["input_mask"].sum()
  assert (rows["nsp_weights"].sum(1) <= 3).all()
  assert (rows["masked_lm_weights"] > 0).sum() == (ex["masked_lm_weights"] > 0).sum()
  # Pack ids 1, 2, … in order, positions restart at each example's [CLS].
  for r in range(len(rows["input_ids"])):
    ids = rows["pack_ids"][r]
    n = int(rows["input_mask"][r].sum())
    assert (ids[:n] > 0).all() and (ids[n:] == 0).all()
    assert (np.diff(ids[:n]) >= 0).all()
    starts = rows["cls_positions"][r][rows["nsp_weights"][r] > 0]
    np.testing.assert_array_equal(rows["position_ids"][r][starts], 0)
    np.testing.assert_array_equal(ids[starts], np.arange(1, len(starts) + 1))
  # Packing pays: fewer rows than examples, and deterministic.
  assert len(batches) < 0.8 * 300
  again = list(packing.pack(_split(ex, 64), S, P, 3, 1, 8))
  for a, b in zip(batches, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_packing_refuses_records_not_in_googles_layout():
  ex = _examples(4)
  ex["input_mask"][0, 1] = 0  # a hole in the mask
  with pytest.raises(packing.PackingError, match="prefix"):
    list(packing.pack([ex], S, P, 3, 1))
  ex = _examples(4)
  ex["masked_lm_weights"][1] = [0, 1, 0, 0, 0]  # padding first
  with pytest.raises(packing.PackingError, match="padding"):
    list(packing.pack([ex], S, P, 3, 1))
  ex = _examples(4)
  ex["input_mask"][2] = 0
  with pytest.raises(packing.PackingError, match="no tokens"):
    list(packing.pack([ex], S, P, 3, 1))


CFG = tiny.model(vocab_size=211, hidden_size=48, num_attention_heads=4,
                 max_position_embeddings=S)


def _apply(model, params, b, **packed):
  return jax.jit(model.apply)({"params": params}, jnp.asarray(b["input_ids"]),
                     jnp.asarray(b["input_mask"]), jnp.asarray(b["segment_ids"]),
                     jnp.asarray(b["masked_lm_positions"]),
                     **{k: jnp.asarray(v) for k, v in packed.items()})


def test_a_packed_row_gives_each_example_its_own_outputs():
  """Three examples in one row: MLM logits, NSP logits and the losses equal
  the same examples each alone in a padded row."""
  ex = _examples(40, seed=3)
  short = np.flatnonzero(ex["input_mask"].sum(1) <= 10)[:3]
  alone = {k: v[short] for k, v in ex.items()}
  row = next(packing.pack([alone], S, P, 3, 1))
  assert row["nsp_weights"].sum() == 3
  model = models.BertForPreTraining(CFG)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), *(
      jnp.asarray(alone[k]) for k in ("input_ids", "input_mask",
                                      "segment_ids",
                                      "masked_lm_positions")))["params"]
  mlm_a, nsp_a = _apply(model, params, alone)
  mlm_p, nsp_p = _apply(model, params, row, **{
      k: row[k] for k in ("position_ids", "pack_ids", "cls_positions")})
  want = np.concatenate([np.asarray(mlm_a)[i, :int(q)] for i, q in enumerate(
      alone["masked_lm_weights"].sum(1))])
  got = np.asarray(mlm_p)[0, :len(want)]
  np.testing.assert_allclose(got, want, atol=2e-5)
  np.testing.assert_allclose(np.asarray(nsp_p)[0], np.asarray(nsp_a),
                             atol=2e-5)
  loss_fn = jax.jit(losses.pretraining_losses)
  la = loss_fn(mlm_a, nsp_a, alone["masked_lm_ids"],
               alone["masked_lm_weights"], alone["next_sentence_labels"])
  lp = loss_fn(mlm_p, nsp_p, row["masked_lm_ids"], row["masked_lm_weights"],
               row["next_sentence_labels"], row["nsp_weights"])
  for k in la:
    np.testing.assert_allclose(float(lp[k]), float(la[k]), rtol=1e-5,
                               err_msg=k)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, vocab_file, short_docs_corpus):
  d = str(tmp_path_factory.mktemp("packed_shards"))
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=S,
                            max_predictions_per_seq=P, dupe_factor=1)
  job.generate(cfg, [short_docs_corpus],
               job.Outputs(output_dir=d, num_shards=4))
  return os.path.join(d, "train-*")


def test_packed_pipeline_is_deterministic_and_resumes(shards):
  spec = input_pipeline.DataSpec(shards, S, P, 8, 30522)
  take = lambda it, n: [b for _, b in zip(range(n), it)]
  a = take(input_pipeline.packed_batches(spec, 3, 3, streams=2), 5)
  b = take(input_pipeline.packed_batches(spec, 3, 3, streams=2, start_step=2),
           3)
  for x, y in zip(a[2:], b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  assert all(x["input_ids"].shape == (8, S) for x in a)
  assert all(x["nsp_weights"].shape == (8, 3) for x in a)
  per_row = np.mean([x["nsp_weights"].sum() / 8 for x in a])
  assert per_row > 1.3  # short documents leave room to pack


def test_a_packing_error_in_the_background_thread_names_the_files():
  def bad_stream():
    yield from packing.pack([_examples(2)], S, P, 3, 1)
    raise packing.PackingError("packing needs input_mask to be 1 on a prefix")
  batches = input_pipeline.global_batches(
      input_pipeline._background(bad_stream(), 2),  # pylint: disable=protected-access
      jax.sharding.SingleDeviceSharding(jax.devices()[0]), ["a.tfrecord"])
  next(batches)  # the batches before the error arrive
  with pytest.raises(input_pipeline.DataError,
                     match=r"prefix .*files: a\.tfrecord"):
    list(batches)


def test_packed_evaluation_equals_unpacked_on_the_same_examples(shards):
  """`eval_packing` evaluates the same held-out examples in fewer rows and
  gets the same metrics; both are means over all the examples (sums over
  batches, then ratios), equal to evaluating them in one batch."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from bert_jax import evaluation  # pylint: disable=g-import-not-at-top
  from bert_jax import sharding  # pylint: disable=g-import-not-at-top
  spec = input_pipeline.DataSpec(shards, S, P, 8, 30522)
  unpacked = input_pipeline.held_out_batches(spec, 6, 0, streams=2)
  want = list(input_pipeline.host_dataset(spec, 0, training=False,
                                          streams=2).take(6))
  assert len(unpacked) == len(want) == 6
  for x, y in zip(unpacked, want):
    for k in y:
      np.testing.assert_array_equal(x[k], y[k].numpy(), err_msg=k)
  cfg = tiny.model(vocab_size=30522, num_hidden_layers=1,
                   max_position_embeddings=S)
  model = models.BertForPreTraining(cfg)
  everything = {k: np.concatenate([b[k] for b in unpacked])
                for k in unpacked[0]}
  params = jax.jit(model.init)(jax.random.PRNGKey(1), *(
      everything[k] for k in ("input_ids", "input_mask", "segment_ids",
                              "masked_lm_positions")))["params"]
  one_batch = losses.losses_from_sums(jax.jit(evaluation.make_eval_step(
      model))(params, everything))
  mesh = sharding.create_mesh(-1)
  phase = ml_collections.ConfigDict({"max_seq_length": S,
                                     "max_predictions_per_seq": P})
  got, rows = {}, {}
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    step = jax.jit(evaluation.make_eval_step(model))
    for k in (0, 3):
      config = ml_collections.ConfigDict({
          "eval_batch_size": 8, "eval_steps": 6, "eval_packing": k,
          "data_streams": 2, "pack_open_rows": 32})
      held_out = evaluation.HeldOut(step, shards, phase, config, mesh)
      got[k] = held_out(params)
      rows[k] = len(held_out._batches)  # pylint: disable=protected-access
      assert held_out(params) == got[k]  # read once, evaluated again
  assert got[0]["eval_examples"] == got[3]["eval_examples"] == 48
  assert rows[3] < rows[0] == 6
  for k, v in one_batch.items():
    np.testing.assert_allclose(got[0][f"eval_{k}"], float(v), rtol=2e-5,
                               err_msg=k)
    np.testing.assert_allclose(got[3][f"eval_{k}"], float(v), rtol=2e-5,
                               err_msg=k)
  config.eval_batch_size = 4096  # more than the records
  with pytest.raises(input_pipeline.DataError, match="eval_batch_size=4096"):
    evaluation.HeldOut(step, shards, phase, config, mesh)(params)
