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
from typing import Callable

import numba
import numpy as np


@dataclasses.dataclass
class Pool:
  """Documents as one flat token array plus sentence offsets per document.

  Document d's sentence boundaries are `offsets[doc_ptr[d]:doc_ptr[d + 1]]`
  (n_sentences + 1 positions in `tokens`).
  """
  tokens: np.ndarray  # int32 [T]
  offsets: np.ndarray  # int64
  doc_ptr: np.ndarray  # int64 [n_docs + 1]
  continuation: np.ndarray | None = None  # bool [T], Chinese WWM flags

  @classmethod
  def from_documents(cls, documents) -> "Pool":
    """From objects with `tokens`, `sentence_lengths`, `continuation`."""
    if not documents:
      return cls(np.zeros(0, np.int32), np.zeros(0, np.int64),
                 np.zeros(1, np.int64))
    tokens = np.concatenate([d.tokens for d in documents]).astype(np.int32)
    n_sent = np.array([len(d.sentence_lengths) for d in documents], np.int64)
    lengths = np.concatenate([d.sentence_lengths for d in documents])
    ends = np.cumsum(lengths)
    # Each document lists its start and then each sentence's end.
    doc_ptr = np.concatenate([[0], np.cumsum(n_sent + 1)])
    offsets = np.empty(doc_ptr[-1], np.int64)
    first_sent = np.cumsum(n_sent) - n_sent
    offsets[doc_ptr[:-1]] = np.concatenate([[0], ends])[first_sent]
    is_end = np.ones(doc_ptr[-1], bool)
    is_end[doc_ptr[:-1]] = False
    offsets[is_end] = ends
    cont = None
    if documents[0].continuation is not None:
      cont = np.concatenate([d.continuation for d in documents])
    return cls(tokens, offsets, doc_ptr, cont)

  @property
  def sentence_offsets(self) -> list[list[int]]:
    """Per document, its n_sentences + 1 offsets (Python lists)."""
    flat = self.offsets.tolist()
    ptr = self.doc_ptr.tolist()
    return [flat[a:b] for a, b in zip(ptr[:-1], ptr[1:])]


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


@numba.njit(cache=True)
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
                short_seq_prob: float, seed: int) -> Spans:
  """All instances of `dupe_factor` passes over the pool, truncated (fast
  engine: the same procedure as `pass_instances`, compiled)."""
  out = _spans_kernel(pool.offsets, pool.doc_ptr, dupe_factor, max_seq_length,
                      short_seq_prob, seed)
  return Spans(out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4] == 1)


@numba.njit(cache=True)
def _spans_kernel(offsets, doc_ptr, dupe_factor, max_seq_length,
                  short_seq_prob, seed):  # pragma: no cover - compiled
  """`pass_instances` × dupe_factor, then `truncate_seq_pair` by counts with
  binomial front removals. randint(a, b) is a + int(random() * (b - a + 1))."""
  np.random.seed(seed)
  n_docs = len(doc_ptr) - 1
  max_num = max_seq_length - 3
  out = np.empty((dupe_factor * (len(offsets) - n_docs), 5), np.int64)
  m = 0
  for _ in range(dupe_factor):
    for d in range(n_docs):
      base = doc_ptr[d]
      n_sent = doc_ptr[d + 1] - base - 1
      target = max_num
      if np.random.random() < short_seq_prob:
        target = 2 + int(np.random.random() * (max_num - 1))
      start = 0
      i = 0
      while i < n_sent:
        if i == n_sent - 1 or offsets[base + i + 1] - offsets[base + start] >= target:
          k = i - start + 1
          a_end = 1
          if k >= 2:
            a_end = 1 + int(np.random.random() * (k - 1))
          a0 = offsets[base + start]
          a1 = offsets[base + start + a_end]
          if k == 1 or np.random.random() < 0.5:
            is_random = 1
            target_b = target - (a1 - a0)
            r = d
            for _t in range(10):
              r = int(np.random.random() * n_docs)
              if r != d:
                break
            rb = doc_ptr[r]
            rn = doc_ptr[r + 1] - rb - 1
            j = int(np.random.random() * rn)
            b0 = offsets[rb + j]
            while j < rn - 1 and offsets[rb + j + 1] - b0 < target_b:
              j += 1
            b1 = offsets[rb + j + 1]
            i -= k - a_end  # put the unused sentences back
          else:
            is_random = 0
            b0 = a1
            b1 = offsets[base + i + 1]
          ta, tb = trim_counts(a1 - a0, b1 - b0, max_num)
          # Front removals: Binomial(n, 1/2), the law of one coin per token.
          fa = np.random.binomial(ta, 0.5) if ta else 0
          fb = np.random.binomial(tb, 0.5) if tb else 0
          a0 += fa
          a1 -= ta - fa
          b0 += fb
          b1 -= tb - fb
          out[m, 0] = a0
          out[m, 1] = a1
          out[m, 2] = b0
          out[m, 3] = b1
          out[m, 4] = is_random
          m += 1
          start = i + 1
        i += 1
  return out[:m]


def build_full_spans(pool: Pool, dupe_factor: int, max_seq_length: int
                     ) -> Spans:
  """`--nsp=False` (RoBERTa's FULL-SENTENCES): whole sentences taken in
  order, across document boundaries, until the next one would not fit
  `max_seq_length - 2` tokens (plus one [SEP] per document boundary inside);
  a sentence longer than that is cut into pieces of that size. One segment
  per instance (`a0:a1`, B empty, label 0); the same instances each of the
  `dupe_factor` passes (their masks differ)."""
  out = _full_kernel(pool.offsets, pool.doc_ptr, max_seq_length - 2)
  out = np.tile(out, (dupe_factor, 1))
  zeros = np.zeros(len(out), bool)
  return Spans(out[:, 0], out[:, 1], out[:, 1], out[:, 1], zeros)


@numba.njit(cache=True)
def _full_kernel(offsets, doc_ptr, budget):  # pragma: no cover - compiled
  n_docs = len(doc_ptr) - 1
  out = np.empty((2 * len(offsets) + 2 * (offsets[-1] // budget + 1)
                  if len(offsets) else 1, 2), np.int64)
  m = 0
  cur0, cur1, used = -1, -1, 0
  for d in range(n_docs):
    base = doc_ptr[d]
    for i in range(doc_ptr[d + 1] - base - 1):
      s0, s1 = offsets[base + i], offsets[base + i + 1]
      extra = 1 if (cur0 >= 0 and i == 0) else 0  # [SEP] between documents
      if cur0 >= 0 and used + extra + s1 - s0 <= budget:
        cur1, used = s1, used + extra + s1 - s0
        continue
      if cur0 >= 0:
        out[m, 0], out[m, 1] = cur0, cur1
        m += 1
        cur0, used = -1, 0
      while s1 - s0 > budget:
        out[m, 0], out[m, 1] = s0, s0 + budget
        m += 1
        s0 += budget
      if s1 > s0:
        cur0, cur1, used = s0, s1, s1 - s0
  if cur0 >= 0:
    out[m, 0], out[m, 1] = cur0, cur1
    m += 1
  return out[:m]


def assemble_full(pool: Pool, spans: Spans, max_seq_length: int, cls_id: int,
                  sep_id: int) -> Batch:
  """`[CLS] tokens [SEP]` rows of `build_full_spans`' instances, a [SEP]
  where a document ends inside; one segment."""
  n = len(spans)
  tokens = np.zeros((n, max_seq_length), np.int32)
  doc_start = np.zeros(len(pool.tokens) + 1, np.bool_)
  doc_start[pool.offsets[pool.doc_ptr[:-1]]] = True
  has_cont = pool.continuation is not None
  cont = np.zeros((n if has_cont else 0, max_seq_length), np.bool_)
  lengths = _assemble_full_kernel(
      pool.tokens, pool.continuation if has_cont else np.zeros(0, np.bool_),
      doc_start, spans.a0, spans.a1, cls_id, sep_id, tokens, cont)
  return Batch(tokens, np.zeros_like(tokens), lengths,
               np.zeros(n, np.int32), cont if has_cont else None)


@numba.njit(cache=True)
def _assemble_full_kernel(pool_tokens, pool_cont, doc_start, a0, a1, cls_id,
                          sep_id, tokens, cont):  # pragma: no cover - compiled
  lengths = np.empty(len(a0), np.int64)
  for r in range(len(a0)):
    tokens[r, 0] = cls_id
    j = 1
    for t in range(a0[r], a1[r]):
      if t > a0[r] and doc_start[t]:
        tokens[r, j] = sep_id
        j += 1
      tokens[r, j] = pool_tokens[t]
      if cont.shape[0]:
        cont[r, j] = pool_cont[t]
      j += 1
    tokens[r, j] = sep_id
    lengths[r] = j + 1
  return lengths


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
  tokens = np.zeros((n, max_seq_length), np.int32)
  segment_ids = np.zeros((n, max_seq_length), np.int32)
  has_cont = pool.continuation is not None
  cont = np.zeros((n if has_cont else 0, max_seq_length), np.bool_)
  _assemble_kernel(pool.tokens,
                   pool.continuation if has_cont else np.zeros(0, np.bool_),
                   spans.a0, spans.a1, spans.b0, spans.b1, cls_id, sep_id,
                   tokens, segment_ids, cont)
  lengths = (spans.a1 - spans.a0) + (spans.b1 - spans.b0) + 3
  return Batch(tokens, segment_ids, lengths.astype(np.int64),
               spans.is_random_next.astype(np.int32),
               cont if has_cont else None)


@numba.njit(cache=True)
def _assemble_kernel(pool_tokens, pool_cont, a0, a1, b0, b1, cls_id, sep_id,
                     tokens, segment_ids, cont):  # pragma: no cover - compiled
  for r in range(len(a0)):
    la = a1[r] - a0[r]
    lb = b1[r] - b0[r]
    tokens[r, 0] = cls_id
    tokens[r, 1:1 + la] = pool_tokens[a0[r]:a1[r]]
    tokens[r, 1 + la] = sep_id
    tokens[r, 2 + la:2 + la + lb] = pool_tokens[b0[r]:b1[r]]
    tokens[r, 2 + la + lb] = sep_id
    segment_ids[r, 2 + la:3 + la + lb] = 1
    if cont.shape[0]:
      cont[r, 1:1 + la] = pool_cont[a0[r]:a1[r]]
      cont[r, 2 + la:2 + la + lb] = pool_cont[b0[r]:b1[r]]
