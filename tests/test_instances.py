"""Instance construction: truncation, NSP, target lengths, assembly."""

import random

import numpy as np

from data_prep import corpus
from data_prep import instances


def _google_truncate(la, lb, max_num_tokens):
  a, b = list(range(la)), list(range(lb))
  while len(a) + len(b) > max_num_tokens:
    (a if len(a) > len(b) else b).pop()
  return la - len(a), lb - len(b)


def test_trim_counts_match_truncate_seq_pair():
  """The closed form the compiled engine uses, against Google's loop."""
  for la in range(0, 30):
    for lb in range(0, 30):
      for m in range(1, 50):
        if la + lb > m and (la == 0 or lb == 0):
          continue
        assert instances.trim_counts(la, lb, m) == _google_truncate(la, lb, m)


def test_truncation_front_removals_follow_the_coin_law():
  """Documents whose single sentence overflows: A is cut to max_num_tokens
  minus B, the front share of the cut is Binomial(n, 1/2)."""
  docs = [corpus.Document(np.arange(i * 100, i * 100 + 100, dtype=np.int32),
                          np.array([100])) for i in range(300)]
  pool = instances.Pool.from_documents(docs)
  spans = instances.build_spans(pool, 20, 40, 0.0, 5)
  ta, tb = instances.trim_counts(100, 100, 37)  # both sides were 100 long
  assert (ta, tb) == (81, 82)
  assert ((spans.a1 - spans.a0) == 100 - ta).all()
  assert ((spans.b1 - spans.b0) == 100 - tb).all()
  front = spans.a0 % 100  # tokens cut from A's front
  assert abs(front.mean() - ta / 2) < 0.3
  assert abs(front.var() - ta / 4) < 3


def _pool(rng, n_docs=200, max_sents=12):
  docs = []
  for _ in range(n_docs):
    lens = rng.integers(3, 40, rng.integers(1, max_sents + 1))
    docs.append(corpus.Document(
        rng.integers(10, 1000, int(lens.sum())).astype(np.int32), lens))
  return instances.Pool.from_documents(docs)


def test_spans_follow_the_rules():
  rng = np.random.default_rng(0)
  pool = _pool(rng)
  spans = instances.build_spans(pool, 3, 64, 0.1, 1)
  la, lb = spans.a1 - spans.a0, spans.b1 - spans.b0
  assert (la >= 1).all() and (lb >= 1).all() and (la + lb <= 61).all()
  doc_of = np.searchsorted([o[0] for o in pool.sentence_offsets],
                           spans.a0, side="right") - 1
  doc_of_b = np.searchsorted([o[0] for o in pool.sentence_offsets],
                             spans.b0, side="right") - 1
  actual = ~spans.is_random_next
  # Actual next: B directly follows A in the same document (before truncation
  # the boundary is a sentence boundary).
  assert (doc_of[actual] == doc_of_b[actual]).all()
  assert (spans.b0[actual] >= spans.a1[actual]).all()
  # Random next: B from another document (200 documents: never the same).
  assert (doc_of[~actual] != doc_of_b[~actual]).all()
  frac = spans.is_random_next.mean()
  assert 0.45 < frac < 0.8  # 1/2, plus forced one-sentence chunks


def test_fast_spans_match_reference_statistics():
  """The fast engine's draws (float-based randint, binomial truncation) give
  the same statistics as Google's exact call sequence."""
  rng = np.random.default_rng(1)
  pool = _pool(rng, n_docs=300, max_sents=30)
  fast = instances.build_spans(pool, 20, 128, 0.1, 2)
  ref_rows = []
  py = random.Random(3)
  trunc = instances.reference_truncate(py, 125)
  for _ in range(20):
    instances.pass_instances(pool, 128, 0.1, py, trunc, ref_rows)
  ref = np.array(ref_rows, np.int64)
  for name, f, r in (
      ("count", len(fast), len(ref)),
      ("random_next", fast.is_random_next.mean(), ref[:, 4].mean()),
      ("len_a", (fast.a1 - fast.a0).mean(), (ref[:, 1] - ref[:, 0]).mean()),
      ("len_b", (fast.b1 - fast.b0).mean(), (ref[:, 3] - ref[:, 2]).mean())):
    assert abs(f - r) / r < 0.03, (name, f, r)
  assert 0.5 < fast.is_random_next.mean() < 0.6


def test_short_target_fraction():
  """A short target is drawn once per document and pass, with prob 0.1."""
  rng = np.random.default_rng(3)
  # One-token sentences: a document's first instance, when B is the actual
  # next segment, is exactly as long as its target.
  docs = [corpus.Document(rng.integers(10, 99, 400).astype(np.int32),
                          np.ones(400, np.int64)) for _ in range(400)]
  pool = instances.Pool.from_documents(docs)
  spans = instances.build_spans(pool, 5, 128, 0.1, 4)
  starts = {o[0] for o in pool.sentence_offsets}
  first = np.array([a in starts for a in spans.a0.tolist()])
  assert first.sum() == 400 * 5
  first &= ~spans.is_random_next
  total = ((spans.a1 - spans.a0) + (spans.b1 - spans.b0))[first]
  short = total < 125
  assert abs(short.mean() - 0.1 * 123 / 124) < 0.02
  # Short targets are uniform on [2, 125].
  assert total[short].min() < 10 and total[short].max() > 115


def test_assemble_layout():
  docs = [corpus.Document(np.arange(10, 30, dtype=np.int32), np.array([5, 15])),
          corpus.Document(np.arange(50, 60, dtype=np.int32), np.array([10]))]
  pool = instances.Pool.from_documents(docs)
  spans = instances.Spans(np.array([0]), np.array([3]), np.array([22]),
                          np.array([25]), np.array([True]))
  b = instances.assemble(pool, spans, 12, cls_id=2, sep_id=3)
  assert b.tokens[0].tolist() == [2, 10, 11, 12, 3, 52, 53, 54, 3, 0, 0, 0]
  assert b.segment_ids[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
  assert b.lengths.tolist() == [9]
  assert b.next_sentence_labels.tolist() == [1]
