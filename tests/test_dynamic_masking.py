"""Dynamic masking: Google's counts and 80/10/10, whole words, a pure
function of the key that does not depend on the mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import dynamic_masking as dm
from bert_jax import sharding

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
