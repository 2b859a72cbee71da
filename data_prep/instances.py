"""Documents → `[CLS] A [SEP] B [SEP]` instances with next-sentence labels.

Google's procedure (per document and dupe pass): the target length is
`max_seq_length - 3`, or with probability `short_seq_prob` (drawn once per
document per pass) uniform in [2, max_seq_length - 3]; sentences accumulate
into a chunk until it reaches the target or the document ends; A takes the
first `randint(1, len(chunk) - 1)` sentences (all of a one-sentence chunk);
B is the rest of the chunk (label 0) or, always for one-sentence chunks and
otherwise with probability 1/2, sentences of another document from a random
start (label 1), in which case the chunk's unused sentences are put back;
`truncate_seq_pair` then trims the longer side one token at a time, front or
back by a fair coin.

Instances are kept as token spans into a pool's flat token array, so no token
list is copied until `assemble` builds the padded batch with NumPy.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, Sequence

import numpy as np


@dataclasses.dataclass
class Pool:
  """Documents as one flat token array plus per-document sentence offsets."""
  tokens: np.ndarray  # int32 [T]
  sentence_offsets: list[list[int]]  # per document: n_sentences + 1 offsets
  continuation: np.ndarray | None = None  # bool [T], Chinese WWM flags

  @classmethod
  def from_documents(cls, documents) -> "Pool":
    """From objects with `tokens`, `sentence_lengths`, `continuation`."""
    if not documents:
      return cls(np.zeros(0, np.int32), [])
    tokens = np.concatenate([d.tokens for d in documents]).astype(np.int32)
    n_sent = [len(d.sentence_lengths) for d in documents]
    ends = np.cumsum(np.concatenate([d.sentence_lengths for d in documents]))
    offsets = np.concatenate([[0], ends]).tolist()
    out, k = [], 0
    for n in n_sent:
      out.append(offsets[k:k + n + 1])
      k += n
    cont = None
    if documents[0].continuation is not None:
      cont = np.concatenate([d.continuation for d in documents])
    return cls(tokens, out, cont)


@dataclasses.dataclass
class Spans:
  """Instances as spans: A = tokens[a0:a1], B = tokens[b0:b1]."""
  a0: np.ndarray
  a1: np.ndarray
  b0: np.ndarray
  b1: np.ndarray
  is_random_next: np.ndarray

  def __len__(self):
    return len(self.a0)

  def take(self, index: np.ndarray) -> "Spans":
    return Spans(*(getattr(self, f.name)[index]
                   for f in dataclasses.fields(self)))


def trim_counts(la: int, lb: int, max_num_tokens: int) -> tuple[int, int]:
  """How many tokens `truncate_seq_pair` removes from A and from B.

  The longer side loses a token each step (B on ties), so the counts are fixed;
  only the front/back choice of each removal is random.
  """
  excess = la + lb - max_num_tokens
  if excess <= 0:
    return 0, 0
  ta = tb = 0
  if la > lb:
    ta = min(excess, la - lb)
  else:
    tb = min(excess, lb - la)
  excess -= ta + tb
  return ta + excess // 2, tb + (excess + 1) // 2


TruncateFn = Callable[[int, int, int, int], tuple[int, int, int, int]]


def truncate_spans(spans: "Spans", max_num_tokens: int,
                   rng: np.random.Generator) -> "Spans":
  """`truncate_seq_pair` for all spans at once.

  The number of tokens each side loses is fixed (`trim_counts`); the number
  taken from the front is Binomial(n, 1/2), the law of one coin per token.
  """
  la, lb = spans.a1 - spans.a0, spans.b1 - spans.b0
  excess = np.maximum(la + lb - max_num_tokens, 0)
  first = np.minimum(excess, np.abs(la - lb))
  ta = np.where(la > lb, first, 0)
  tb = np.where(la > lb, 0, first)
  rest = excess - first
  ta, tb = ta + rest // 2, tb + (rest + 1) // 2
  fa, fb = rng.binomial(ta, 0.5), rng.binomial(tb, 0.5)
  return Spans(spans.a0 + fa, spans.a1 - (ta - fa), spans.b0 + fb,
               spans.b1 - (tb - fb), spans.is_random_next)


def reference_truncate(rng: random.Random, max_num_tokens: int) -> TruncateFn:
  """Google's `truncate_seq_pair`, one `rng.random()` per removed token."""
  def truncate(a0, a1, b0, b1):
    while (a1 - a0) + (b1 - b0) > max_num_tokens:
      if (a1 - a0) > (b1 - b0):
        if rng.random() < 0.5:
          a0 += 1
        else:
          a1 -= 1
      elif rng.random() < 0.5:
        b0 += 1
      else:
        b1 -= 1
    return a0, a1, b0, b1
  return truncate


def pass_instances(pool: Pool, max_seq_length: int, short_seq_prob: float,
                   rng: random.Random, truncate: TruncateFn | None, out,
                   exact_randint: bool = True) -> None:
  """One dupe pass of Google's `create_instances_from_document` over every
  document of the pool, in order; appends span tuples
  `(a0, a1, b0, b1, is_random_next)` to `out`.

  `truncate` trims each pair when it is made (Google's call order); None leaves
  pairs untrimmed for `truncate_spans`. `exact_randint=False` draws integers
  as `a + int(random() * (b - a + 1))` (bias below 2**-50, three times
  faster) instead of `random.randint`.
  """
  append = out.append
  offsets = pool.sentence_offsets
  n_docs = len(offsets)
  max_num_tokens = max_seq_length - 3
  rand = rng.random
  randint = rng.randint if exact_randint else (
      lambda a, b: a + int(rand() * (b - a + 1)))
  for doc_index, off in enumerate(offsets):
    n_sent = len(off) - 1
    target = max_num_tokens
    if rand() < short_seq_prob:
      target = randint(2, max_num_tokens)
    start = 0  # first sentence of the current chunk
    i = 0
    while i < n_sent:
      if i == n_sent - 1 or off[i + 1] - off[start] >= target:
        k = i - start + 1
        a_end = randint(1, k - 1) if k >= 2 else 1
        a0, a1 = off[start], off[start + a_end]
        if k == 1 or rand() < 0.5:
          is_random = True
          target_b = target - (a1 - a0)
          for _ in range(10):
            r = randint(0, n_docs - 1)
            if r != doc_index:
              break
          roff = offsets[r]
          last = len(roff) - 2
          j = randint(0, last)
          b0 = roff[j]
          while j < last and roff[j + 1] - b0 < target_b:
            j += 1
          b1 = roff[j + 1]
          i -= k - a_end  # put the unused sentences back
        else:
          is_random = False
          b0, b1 = a1, off[i + 1]
        if truncate is not None:
          a0, a1, b0, b1 = truncate(a0, a1, b0, b1)
        append((a0, a1, b0, b1, is_random))
        start = i + 1
      i += 1


def build_spans(pool: Pool, dupe_factor: int, max_seq_length: int,
                short_seq_prob: float, rng: random.Random,
                np_rng: np.random.Generator | None = None) -> Spans:
  """All instances of `dupe_factor` passes over the pool (fast engine)."""
  out: list[tuple[int, int, int, int, bool]] = []
  for _ in range(dupe_factor):
    pass_instances(pool, max_seq_length, short_seq_prob, rng, None, out,
                   exact_randint=False)
  arr = np.array(out, np.int64).reshape(-1, 5)
  spans = Spans(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4] == 1)
  if np_rng is None:
    np_rng = np.random.default_rng(rng.getrandbits(64))
  return truncate_spans(spans, max_seq_length - 3, np_rng)


@dataclasses.dataclass
class Batch:
  tokens: np.ndarray  # int32 [N, S], zero-padded
  segment_ids: np.ndarray  # int32 [N, S]
  lengths: np.ndarray  # int64 [N]
  next_sentence_labels: np.ndarray  # int32 [N], 1 = random next
  continuation: np.ndarray | None  # bool [N, S] (Chinese WWM) or None


def assemble(pool: Pool, spans: Spans, max_seq_length: int, cls_id: int,
             sep_id: int) -> Batch:
  """Builds padded `[CLS] A [SEP] B [SEP]` rows for a set of spans."""
  n = len(spans)
  a0, b0 = spans.a0.astype(np.int32), spans.b0.astype(np.int32)
  la = (spans.a1 - spans.a0).astype(np.int32)[:, None]
  lb = (spans.b1 - spans.b0).astype(np.int32)[:, None]
  j = np.arange(max_seq_length, dtype=np.int32)[None, :]
  lengths = la + lb + 3
  # Position j holds A[j - 1] for j <= len(A), else B[j - len(A) - 2].
  in_a = j <= la
  src = np.where(in_a, a0[:, None] - 1, b0[:, None] - la - 2) + j
  body = (j >= 1) & (j < lengths - 1) & (j != la + 1)
  np.clip(src, 0, max(0, len(pool.tokens) - 1), out=src)
  tokens = pool.tokens[src] if len(pool.tokens) else np.zeros_like(src)
  tokens *= body
  rows = np.arange(n)
  tokens[:, 0] = cls_id
  tokens[rows, la[:, 0] + 1] = sep_id
  tokens[rows, lengths[:, 0] - 1] = sep_id
  segment_ids = (~in_a & (j < lengths)).astype(np.int32)
  segment_ids[rows, la[:, 0] + 1] = 0
  lengths = lengths[:, 0].astype(np.int64)
  cont = None
  if pool.continuation is not None:
    cont = pool.continuation[src] & body
  return Batch(tokens, segment_ids, lengths,
               spans.is_random_next.astype(np.int32), cont)
