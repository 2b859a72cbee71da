"""Masked-LM selection: count formula, specials, 80/10/10, whole words."""

import random

import numpy as np
import pytest

from data_prep import masking

CLS, SEP, MASK = 2, 3, 4
V = 1000


def _spec(p=20, prob=0.15, wwm=False):
  cont = None
  if wwm:
    cont = np.zeros(V, bool)
    cont[500:] = True  # ids >= 500 play "##" pieces
  return masking.MaskingSpec(p, prob, CLS, SEP, MASK,
                             np.arange(V, dtype=np.int64), cont)


def _batch(rng, n, s, lengths=None):
  lengths = lengths if lengths is not None else rng.integers(8, s + 1, n)
  toks = np.zeros((n, s), np.int32)
  for i, l in enumerate(lengths):
    toks[i, :l] = rng.integers(10, 500, l)
    toks[i, 0] = CLS
    mid = max(2, l // 2)
    toks[i, mid] = SEP
    toks[i, l - 1] = SEP
  return toks, np.asarray(lengths)


def test_num_to_predict_is_googles_formula_with_py3_rounding():
  spec = _spec(p=1000)
  lengths = np.arange(1, 600)
  want = [min(1000, max(1, int(round(l * 0.15)))) for l in lengths]
  assert masking.num_to_predict(lengths, spec).tolist() == want
  # Banker's rounding: 30 * 0.15 = 4.5 -> 4, 70 * 0.15 = 10.5 -> 10.
  assert masking.num_to_predict(np.array([30, 70, 128, 512]),
                                _spec(p=20)).tolist() == [4, 10, 19, 20]


@pytest.mark.parametrize("wwm", [False, True])
def test_masks_respect_rules(wwm):
  rng = np.random.default_rng(0)
  toks, lengths = _batch(rng, 500, 64)
  if wwm:  # make some multi-piece words
    toks = np.where((toks > 300) & (np.arange(64) > 1) & (toks != SEP),
                    toks + 200, toks)
  spec = _spec(p=10, wwm=wwm)
  out = masking.mask_batch(toks, lengths, spec, rng)
  ntp = masking.num_to_predict(lengths, spec)
  for i in range(len(toks)):
    k = int(out.weights[i].sum())
    pos = out.positions[i, :k]
    assert (np.diff(pos) > 0).all()  # sorted, unique
    assert not np.isin(toks[i, pos], [CLS, SEP]).any()
    assert (pos < lengths[i]).all()
    assert (out.label_ids[i, :k] == toks[i, pos]).all()
    assert (out.positions[i, k:] == 0).all() and (out.label_ids[i, k:] == 0).all()
    assert k <= ntp[i]
    if not wwm:
      assert k == ntp[i]  # enough candidates: exactly num_to_predict
    unmasked = np.setdiff1d(np.arange(64), pos)
    assert (out.input_ids[i, unmasked] == toks[i, unmasked]).all()


def test_80_10_10_proportions():
  rng = np.random.default_rng(1)
  toks, lengths = _batch(rng, 20000, 128, np.full(20000, 128))
  out = masking.mask_batch(toks, lengths, _spec(), rng)
  w = out.weights > 0
  rows = np.nonzero(w)[0]
  new = out.input_ids[rows, out.positions[w]]
  orig = out.label_ids[w]
  n = len(new)
  assert n == 20000 * 19
  is_mask = new == MASK
  kept = new == orig
  # Random replacements hit the original id or [MASK] with prob ~1/V only.
  assert abs(is_mask.mean() - 0.8) < 0.005
  assert abs((kept & ~is_mask).mean() - 0.1) < 0.004
  assert abs((~kept & ~is_mask).mean() - 0.1) < 0.004
  # Random ids are uniform over the whole vocab (specials included).
  rand_ids = new[~kept & ~is_mask]
  assert rand_ids.min() < 20 and rand_ids.max() > V - 20


def test_whole_words_are_masked_together_and_overflow_skipped():
  # [CLS] a ##b ##c d ##e [SEP] f [SEP]: groups {1,2,3} {4,5} {7}
  toks = np.array([[CLS, 10, 510, 511, 11, 512, SEP, 12, SEP]], np.int32)
  seen = set()
  rng = np.random.default_rng(2)
  spec = _spec(p=5, prob=0.3, wwm=True)  # round(9 * .3) = 3 predictions
  for _ in range(300):
    out = masking.mask_batch(np.repeat(toks, 4, 0), np.full(4, 9), spec, rng)
    for i in range(4):
      pos = tuple(out.positions[i, :int(out.weights[i].sum())])
      seen.add(pos)
  # Whole groups only: {1,2,3} fills the 3 slots; otherwise {1,2,3} would
  # overflow and is skipped, and {4,5} + {7} are taken.
  assert seen == {(1, 2, 3), (4, 5, 7)}


def test_continuation_after_sep_joins_previous_group():
  # Google attaches a "##" piece that follows a skipped [SEP] to the group
  # before the [SEP].
  toks = [CLS, 10, SEP, 510, SEP]
  spec = _spec(p=3, prob=0.5, wwm=True)  # round(2.5) = 2 predictions
  for seed in range(50):
    _, positions, _ = masking.mask_reference(toks, spec, random.Random(seed))
    assert positions == [1, 3]
  out = masking.mask_batch(np.array([toks], np.int32), np.array([5]), spec,
                           np.random.default_rng(0))
  assert out.positions[0, :2].tolist() == [1, 3]


def test_fast_and_reference_wwm_select_the_same_distribution():
  rng = np.random.default_rng(3)
  toks, lengths = _batch(rng, 4000, 32, np.full(4000, 32))
  toks = np.where((toks % 3 == 0) & (np.arange(32) > 1) & (toks != SEP),
                  np.minimum(toks + 500, V - 1), toks)
  spec = _spec(p=8, prob=0.2, wwm=True)
  fast = masking.mask_batch(toks, lengths, spec, rng)
  py = random.Random(0)
  ref_counts = np.zeros(32)
  for row in toks:
    _, pos, _ = masking.mask_reference(row.tolist(), spec, py)
    ref_counts[pos] += 1
  fast_counts = np.zeros(32)
  np.add.at(fast_counts, fast.positions[fast.weights > 0], 1)
  # Per-position selection frequencies agree within sampling noise.
  assert abs(fast_counts.sum() - ref_counts.sum()) / ref_counts.sum() < 0.01
  np.testing.assert_allclose(fast_counts / 4000, ref_counts / 4000, atol=0.03)
