"""Masked-LM selection: Google's rules, vectorised over a batch of instances.

Rules (Google's `create_masked_lm_predictions`):
* candidates are every position except [CLS] and [SEP];
* with whole-word masking, a candidate that continues a word (a `##` piece, or a
  Chinese character inside a segmented word) joins the previous candidate's
  group, even across a skipped [SEP];
* num_to_predict = min(max_predictions_per_seq,
                       max(1, round_half_even(len(tokens) * masked_lm_prob)))
  where len(tokens) counts the special tokens;
* groups are visited in random order; a group is taken if it still fits
  (a group that would overflow is skipped, not a stop);
* each taken position independently: 80% [MASK], 10% kept, 10% a token drawn
  uniformly from the vocabulary's word list (any token, specials included).

`mask_batch` draws from a NumPy generator; `mask_reference` replays Google's
exact `random.Random` call order for one instance (reference mode).
"""

from __future__ import annotations

import dataclasses
import random

import numba
import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskingSpec:
  max_predictions_per_seq: int
  masked_lm_prob: float
  cls_id: int
  sep_id: int
  mask_id: int
  random_ids: np.ndarray  # int64: Google's vocab word list, as ids.
  continuation: np.ndarray | None  # bool[vocab]: set for whole-word masking.


@dataclasses.dataclass
class MaskedBatch:
  input_ids: np.ndarray  # int32 [N, S], after masking.
  positions: np.ndarray  # int32 [N, P], sorted, 0-padded.
  label_ids: np.ndarray  # int32 [N, P], original ids, 0-padded.
  weights: np.ndarray  # float32 [N, P], 1.0 for real predictions.


def num_to_predict(lengths: np.ndarray, spec: MaskingSpec) -> np.ndarray:
  """Google's count; np.rint rounds half to even like Python 3's round."""
  n = np.rint(lengths.astype(np.float64) * spec.masked_lm_prob).astype(np.int64)
  return np.minimum(spec.max_predictions_per_seq, np.maximum(1, n))


def mask_batch(tokens: np.ndarray, lengths: np.ndarray, spec: MaskingSpec,
               rng: np.random.Generator,
               extra_continuation: np.ndarray | None = None) -> MaskedBatch:
  """Masks a zero-padded batch `tokens` [N, S] of `lengths` [N] tokens.

  `extra_continuation` (bool [N, S]) marks further continuation positions, e.g.
  Chinese characters inside a segmented word; it implies whole-word grouping.
  Compiled: per row, candidate groups are visited in a lazily drawn random
  order (a partial Fisher-Yates shuffle, the same law as Google's full
  shuffle) and taken while they fit.
  """
  n, s = tokens.shape
  p = spec.max_predictions_per_seq
  if p >= s:
    raise ValueError(f"max_predictions_per_seq={p} must be below the "
                     f"sequence length {s}.")
  wwm = spec.continuation is not None or extra_continuation is not None
  vocab_cont = (spec.continuation if spec.continuation is not None
                else np.zeros(0, np.bool_))
  extra = (extra_continuation if extra_continuation is not None
           else np.zeros((0, 0), np.bool_))
  out = MaskedBatch(input_ids=np.ascontiguousarray(tokens, np.int32).copy(),
                    positions=np.zeros((n, p), np.int32),
                    label_ids=np.zeros((n, p), np.int32),
                    weights=np.zeros((n, p), np.float32))
  _mask_kernel(out.input_ids, lengths.astype(np.int64), spec.masked_lm_prob,
               spec.cls_id, spec.sep_id, spec.mask_id,
               spec.random_ids.astype(np.int64), vocab_cont, extra, wwm,
               int(rng.integers(2**32)), out.positions, out.label_ids,
               out.weights)
  return out


@numba.njit(cache=True)
def _mask_kernel(ids, lengths, prob, cls_id, sep_id, mask_id, random_ids,
                 vocab_cont, extra, wwm, seed, positions, label_ids,
                 weights):  # pragma: no cover - compiled
  """In place: masks `ids` rows and fills the prediction arrays."""
  np.random.seed(seed)
  n, s = ids.shape
  p = positions.shape[1]
  cand = np.empty(s, np.int64)  # candidate positions, in order
  gptr = np.empty(s + 1, np.int64)  # group g = cand[gptr[g]:gptr[g + 1]]
  order = np.empty(s, np.int64)
  chosen = np.empty(s, np.int64)
  n_words = len(random_ids)
  for r in range(n):
    length = lengths[r]
    x = length * prob  # Python 3 round(): half to even
    ntp = int(np.floor(x))
    frac = x - ntp
    if frac > 0.5 or (frac == 0.5 and ntp % 2 == 1):
      ntp += 1
    ntp = min(p, max(1, ntp))
    nc = 0
    ng = 0
    for i in range(length):
      t = ids[r, i]
      if t == cls_id or t == sep_id:
        continue
      cont = False
      if wwm and nc > 0:
        if len(vocab_cont) and vocab_cont[t]:
          cont = True
        if extra.shape[0] and extra[r, i]:
          cont = True
      if not cont:
        gptr[ng] = nc
        ng += 1
      cand[nc] = i
      nc += 1
    gptr[ng] = nc
    for g in range(ng):
      order[g] = g
    count = 0
    for k in range(ng):
      if count >= ntp:
        break
      j = k + int(np.random.random() * (ng - k))  # lazy Fisher-Yates
      g = order[j]
      order[j] = order[k]
      order[k] = g
      size = gptr[g + 1] - gptr[g]
      if count + size > ntp:
        continue
      for q in range(gptr[g], gptr[g + 1]):
        chosen[count] = cand[q]
        count += 1
    chosen[:count].sort()
    for q in range(count):
      pos = chosen[q]
      label = ids[r, pos]
      positions[r, q] = pos
      label_ids[r, q] = label
      weights[r, q] = 1.0
      u = np.random.random()
      if u < 0.8:
        ids[r, pos] = mask_id
      elif u >= 0.9:
        ids[r, pos] = random_ids[int(np.random.random() * n_words)]


def mask_reference(tokens: list[int], spec: MaskingSpec, rng: random.Random,
                   continuation: list[bool] | None = None):
  """One instance with Google's exact `random.Random` call order.

  Returns (output ids, sorted positions, label ids).
  """
  wwm = spec.continuation is not None or continuation is not None
  groups: list[list[int]] = []
  for i, t in enumerate(tokens):
    if t == spec.cls_id or t == spec.sep_id:
      continue
    cont = wwm and groups and (
        (spec.continuation is not None and spec.continuation[t]) or
        (continuation is not None and continuation[i]))
    if cont:
      groups[-1].append(i)
    else:
      groups.append([i])
  rng.shuffle(groups)
  ntp = min(spec.max_predictions_per_seq,
            max(1, int(round(len(tokens) * spec.masked_lm_prob))))
  output = list(tokens)
  masked: list[int] = []
  covered: set[int] = set()
  n_words = len(spec.random_ids)
  for group in groups:
    if len(masked) >= ntp:
      break
    if len(masked) + len(group) > ntp or any(i in covered for i in group):
      continue
    for i in group:
      covered.add(i)
      if rng.random() < 0.8:
        output[i] = spec.mask_id
      elif rng.random() < 0.5:
        output[i] = tokens[i]
      else:
        output[i] = int(spec.random_ids[rng.randint(0, n_words - 1)])
      masked.append(i)
  masked.sort()
  return output, masked, [tokens[i] for i in masked]
