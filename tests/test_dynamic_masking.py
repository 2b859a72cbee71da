"""Dynamic masking: Google's counts and 80/10/10, whole words, a pure
function of the key that does not depend on the mesh."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import dynamic_masking as dm
from bert_jax import sharding
import tiny

CLS, SEP, MASK, VOCAB = 101, 102, 103, 1000
SPEC = dm.MaskSpec(max_predictions=20, vocab_size=VOCAB, mask_id=MASK,
                   special_ids=(0, CLS, SEP, MASK))


def _batch(b=64, s=128, seed=0):
  """Rows of [CLS] a [SEP] b [SEP] with random lengths, zero-padded."""
  rng = np.random.default_rng(seed)
  ids = np.zeros((b, s), np.int32)
  for i in range(b):
    n = int(rng.integers(5, s + 1))
    row = rng.integers(1000 // 2, VOCAB, n).astype(np.int32)
    row[0], row[n // 2], row[n - 1] = CLS, SEP, SEP
    ids[i, :n] = row
  return ids, (ids > 0).astype(np.int32)


def test_counts_targets_and_only_chosen_tokens_change():
  ids, mask = _batch()
  out = jax.jit(lambda k, i, m: dm.draw(k, i, m, SPEC))(
      jax.random.PRNGKey(0), ids, mask)
  out = jax.tree_util.tree_map(np.asarray, out)
  n = mask.sum(1)
  want = np.minimum(20, np.maximum(1, np.round(n * 0.15))).astype(int)
  assert (out["masked_lm_weights"].sum(1) == want).all()  # Google's count
  for i in range(len(ids)):
    k = want[i]
    pos = out["masked_lm_positions"][i]
    assert (np.diff(pos[:k]) > 0).all() and (pos[k:] == 0).all()
    assert not np.isin(ids[i, pos[:k]], (0, CLS, SEP)).any()  # never special
    np.testing.assert_array_equal(out["masked_lm_ids"][i, :k], ids[i, pos[:k]])
    assert (out["masked_lm_ids"][i, k:] == 0).all()
    changed = np.flatnonzero(out["input_ids"][i] != ids[i])
    assert set(changed) <= set(pos[:k])  # nothing else touched


def test_eighty_ten_ten():
  ids, mask = _batch(b=512, s=128, seed=1)
  spec = dm.MaskSpec(max_predictions=128, vocab_size=VOCAB, mask_id=MASK,
                     special_ids=(0, CLS, SEP, MASK), rate=0.3)
  out = jax.tree_util.tree_map(np.asarray, jax.jit(
      lambda k: dm.draw(k, ids, mask, spec))(jax.random.PRNGKey(3)))
  w = out["masked_lm_weights"] > 0
  shown = np.take_along_axis(out["input_ids"], out["masked_lm_positions"], 1)[w]
  orig = out["masked_lm_ids"][w]
  masked, kept = np.mean(shown == MASK), np.mean(shown == orig)
  assert w.sum() > 10_000
  assert abs(masked - 0.8) < 0.015 and abs(kept - 0.1) < 0.01, (masked, kept)


def test_whole_words_are_masked_whole_within_the_count():
  rng = np.random.default_rng(2)
  cont = np.zeros(VOCAB, bool)
  cont[800:] = True  # ids >= 800 are "##" pieces
  ids, mask = _batch(b=128, s=64, seed=2)
  pieces = rng.random(ids.shape) < 0.5
  ids = np.where(pieces & (ids >= 500) & (mask > 0),
                 rng.integers(800, VOCAB, ids.shape), ids).astype(np.int32)
  spec = dm.MaskSpec(max_predictions=10, vocab_size=VOCAB, mask_id=MASK,
                     special_ids=(0, CLS, SEP, MASK), whole_word=True,
                     rate=0.2)
  out = jax.tree_util.tree_map(np.asarray, jax.jit(
      lambda k: dm.draw(k, ids, mask, spec, cont))(jax.random.PRNGKey(5)))
  want = np.minimum(10, np.maximum(1, np.round(mask.sum(1) * 0.2)))
  got = out["masked_lm_weights"].sum(1)
  assert (got <= want).all() and got.mean() > 0.95 * want.mean()
  for i in range(len(ids)):
    chosen = set(out["masked_lm_positions"][i, :int(got[i])].tolist())
    row, real = ids[i], mask[i] > 0
    for p in range(1, len(row)):
      # A "##" piece goes with the piece before it (unless that is special).
      if real[p] and cont[row[p]] and row[p - 1] not in (CLS, SEP):
        assert (p in chosen) == (p - 1 in chosen), (i, p)


def test_a_pure_function_of_the_key_on_any_mesh():
  ids, mask = _batch(b=16, s=32, seed=4)
  f = jax.jit(lambda k, i, m: dm.draw(k, i, m, SPEC))
  one = f(jax.random.PRNGKey(7), ids, mask)
  again = f(jax.random.PRNGKey(7), ids, mask)
  other = f(jax.random.PRNGKey(8), ids, mask)
  mesh = sharding.create_mesh(-1)
  data = sharding.batch_sharding(mesh)
  sharded = f(jax.random.PRNGKey(7), jax.device_put(ids, data),
              jax.device_put(mask, data))
  assert len(mesh.devices.flat) == 8
  for k in one:
    np.testing.assert_array_equal(np.asarray(one[k]), np.asarray(again[k]))
    np.testing.assert_array_equal(np.asarray(one[k]), np.asarray(sharded[k]))
  assert not np.array_equal(np.asarray(one["masked_lm_positions"]),
                            np.asarray(other["masked_lm_positions"]))


def test_bad_shares_are_refused():
  with pytest.raises(ValueError, match="mask_rate=0"):
    dm.MaskSpec(20, VOCAB, MASK, (0,), rate=0.0)
  with pytest.raises(ValueError, match="summing to at most 1"):
    dm.MaskSpec(20, VOCAB, MASK, (0,), mask=0.8, random=0.3)
  assert jnp.all(dm.predictions_per_example(jnp.ones((1, 10)), SPEC) == 2)


def test_a_continuation_after_sep_joins_the_word_before_it():
  """Google's rule: a "##" piece joins the previous candidate's word even
  across a [SEP]; the first candidate starts a word even if it is "##"."""
  cont = np.zeros(VOCAB, bool)
  cont[900:] = True
  ids = np.array([[CLS, 900, 500, SEP, 901, 902, 600, SEP]], np.int32)
  mask = np.ones_like(ids)
  spec = dm.MaskSpec(max_predictions=7, vocab_size=VOCAB, mask_id=MASK,
                     special_ids=(0, CLS, SEP), whole_word=True, rate=0.3)
  # Words {1}, {2, 4, 5}, {6}; 2 predictions: the 3-piece word never fits,
  # the two single ones always do (Google's greedy fill skips, not stops).
  draw = jax.jit(lambda key: dm.draw(key, ids, mask, spec, cont))
  for seed in range(20):
    out = jax.tree_util.tree_map(np.asarray, draw(jax.random.PRNGKey(seed)))
    chosen = out["masked_lm_positions"][0][out["masked_lm_weights"][0] > 0]
    assert chosen.tolist() == [1, 6], seed


def _records(pattern):
  from bert_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = input_pipeline.list_files(pattern)
  spec = input_pipeline.DataSpec(pattern, 32, 5, 1)
  ds = tf.data.TFRecordDataset(files).batch(10_000).map(
      input_pipeline._parse_fn(spec))  # pylint: disable=protected-access
  return {k: np.concatenate([b[k] for b in ds.as_numpy_iterator()])
          for k in ("input_ids", "input_mask", "masked_lm_positions",
                    "masked_lm_ids", "masked_lm_weights",
                    "next_sentence_labels")}


def test_unmasked_shards_are_the_static_ones_with_masks_undone(
    tiny_shards, tiny_unmasked_shards, vocab_file):
  """data_prep --masking=none writes the same instances as the static run,
  with no [MASK] and all-zero masked_lm_*; `restore` (device) and
  `restored_np` (host) undo a static shard's masks exactly."""
  from data_prep import schema  # pylint: disable=g-import-not-at-top
  for split in ("train", "eval"):
    static = _records(f"{tiny_shards}/{split}-*")
    plain = _records(f"{tiny_unmasked_shards}/{split}-*")
    assert len(plain["input_ids"]) == len(static["input_ids"]) > 20
    for k in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
      assert not plain[k].any(), k
    assert not (plain["input_ids"] == 103).any()  # [MASK]
    assert static["masked_lm_weights"].sum() > 0
    np.testing.assert_array_equal(dm.restored_np(static), plain["input_ids"])
    np.testing.assert_array_equal(
        np.asarray(jax.jit(dm.restore)(static)), plain["input_ids"])
    np.testing.assert_array_equal(static["next_sentence_labels"],
                                  plain["next_sentence_labels"])
    # Fresh masks depend on the key and the tokens, not on the old masks.
    spec = dm.MaskSpec(5, 30522, 103, (0, 101, 102))
    redrawn = [jax.tree_util.tree_map(np.asarray, jax.jit(
        lambda b: dm.apply(jax.random.PRNGKey(1), b, spec))(x))
               for x in (static, plain)]
    for k in redrawn[0]:
      np.testing.assert_array_equal(redrawn[0][k], redrawn[1][k])
    assert not np.array_equal(redrawn[0]["masked_lm_positions"],
                              static["masked_lm_positions"])
  meta = schema.read_metadata(f"{tiny_unmasked_shards}/metadata.json")
  assert not schema.masked(meta) and schema.masked(
      schema.read_metadata(f"{tiny_shards}/metadata.json"))


def test_held_out_masks_are_googles_and_fixed(tiny_shards, vocab_file):
  """Held-out shards without masks get Google's count at eval_mask_rate
  from a fixed seed: the same for every call, whatever masks the shards
  had."""
  vocab = dm.load_vocab(vocab_file)
  ex = _records(f"{tiny_shards}/eval-*")
  plain = {**ex, "input_ids": dm.restored_np(ex),
           **{k: np.zeros_like(ex[k]) for k in
              ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")}}
  mask = dm.host_masker(5, 0.15, vocab)
  a, b = mask(plain), mask(ex)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  n = ex["input_mask"].sum(1)
  np.testing.assert_array_equal(a["masked_lm_weights"].sum(1),
                                np.minimum(5, np.maximum(1, np.rint(n * 0.15))))
  assert not np.array_equal(a["masked_lm_positions"],
                            ex["masked_lm_positions"])
  assert not np.array_equal(mask(plain, stream=1)["masked_lm_positions"],
                            a["masked_lm_positions"])


def _dynamic(files, steps, eval_files=""):
  c = tiny.config(files, steps)
  c.phase1.update(masking="dynamic", eval_files=eval_files)
  c.checkpoint.update(save_every=2, async_save=False)
  c.log_every, c.eval_batch_size, c.eval_steps = 1, 8, 2
  return c


def _params(workdir):
  from bert_jax import checkpointing  # pylint: disable=g-import-not-at-top
  ckpt = checkpointing.Checkpointer(workdir, 1, 10)
  state, _ = ckpt.restore_arrays(ckpt.latest_step())
  ckpt.close()
  return jax.tree_util.tree_leaves(state["params"])


def test_dynamic_training_is_the_same_from_either_shards_and_on_resume(
    tiny_shards, tiny_unmasked_shards, tmp_path):
  """Masks drawn in training: unmasked shards, and static shards with their
  masks undone, train the same model bit for bit; a run stopped at step 2
  and resumed equals the uninterrupted one; held-out shards without masks
  evaluate with fixed masks."""
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  whole = train.train_and_evaluate(_dynamic(
      f"{tiny_unmasked_shards}/train-*", 4, f"{tiny_unmasked_shards}/eval-*"),
      str(tmp_path / "a"))
  config = _dynamic(f"{tiny_shards}/train-*", 4)
  first = train.train_and_evaluate(config, str(tmp_path / "b"))
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")  # as if killed after 2
  rest = train.train_and_evaluate(config, str(tmp_path / "b"))
  losses = [m["loss"] for m in whole["train"]]
  assert losses == [m["loss"] for m in first["train"]]
  assert losses[2:] == [m["loss"] for m in rest["train"]]
  for a, b in zip(_params(str(tmp_path / "a")), _params(str(tmp_path / "b"))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ev = whole["eval"]
  assert ev["eval_examples"] == 16 and 0 <= ev["eval_mlm_accuracy"] < 1


def test_masking_settings_are_checked(tiny_unmasked_shards, tmp_path):
  from bert_jax import settings  # pylint: disable=g-import-not-at-top
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  c = tiny.config(f"{tiny_unmasked_shards}/train-*", 2)
  with pytest.raises(settings.ConfigError,
                     match="phase1.train_files: the shards have no masks"):
    train.train_and_evaluate(c, str(tmp_path / "w"))
  assert not os.listdir(tmp_path / "w")  # refused before anything was written
  for field, value, message in (
      ("packing", 2, "not supported together yet"),
      ("mask_rate", 0.0, "mask_rate=0.0"),
      ("random_token_prob", 0.3, "summing to at most 1"),
      ("masking", "sometimes", "static .* or dynamic")):
    c = _dynamic(f"{tiny_unmasked_shards}/train-*", 2)
    c.phase1[field] = value
    with pytest.raises(settings.ConfigError, match=message):
      settings.read(c)
  c = _dynamic(f"{tiny_unmasked_shards}/train-*", 2)
  c.vocab_file = str(tmp_path / "missing.txt")
  with pytest.raises(ValueError, match="config.vocab_file: .*no such file"):
    train.train_and_evaluate(c, str(tmp_path / "v"))
