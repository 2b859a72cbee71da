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
  """
  n, s = tokens.shape
  p = spec.max_predictions_per_seq
  if p >= s:
    raise ValueError(f"max_predictions_per_seq={p} must be below the "
                     f"sequence length {s}.")
  pos = np.arange(s)
  cand = ((pos[None, :] < lengths[:, None]) & (tokens != spec.cls_id)
          & (tokens != spec.sep_id))
  ntp = num_to_predict(lengths, spec)
  wwm = spec.continuation is not None or extra_continuation is not None
  if wwm:
    cont = (spec.continuation[tokens] if spec.continuation is not None
            else np.zeros_like(cand))
    if extra_continuation is not None:
      cont = cont | extra_continuation
    # A continuation joins the previous group only if some candidate precedes.
    has_prev = np.cumsum(cand, axis=1) > 1
    starts = cand & ~(cont & has_prev)
    selected = _select_groups(cand, starts, ntp, rng)
  else:
    keys = np.where(cand, rng.random((n, s), np.float32), np.float32(2.0))
    # The p smallest keys per row (unordered); the first ntp of them by key.
    top = np.argpartition(keys, p - 1, axis=1)[:, :p]
    order = np.argsort(np.take_along_axis(keys, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)  # by key
    take = (np.arange(p) < ntp[:, None]) & cand[np.arange(n)[:, None], top]
    positions = np.sort(np.where(take, top, s), axis=1)
    return _apply(tokens, positions, spec, rng)
  return _apply(tokens, _to_positions(selected, p, s), spec, rng)


def _to_positions(selected: np.ndarray, p: int, s: int) -> np.ndarray:
  """bool [N, S] → sorted positions [N, P], padded with S."""
  n = len(selected)
  rows, cols = np.nonzero(selected)
  counts = selected.sum(axis=1)
  slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
  out = np.full((n, p), s, np.int64)
  out[rows, slot] = cols
  return out


def _select_groups(cand, starts, ntp, rng):
  """Greedy take-if-it-fits over groups in random order, for all rows at once."""
  n, s = cand.shape
  group = np.cumsum(starts, axis=1) - 1  # group index of each position
  n_groups = starts.sum(axis=1)
  g_max = int(n_groups.max()) if n else 0
  if g_max == 0:
    return np.zeros((n, s), bool)
  rows, cols = np.nonzero(cand)
  sizes = np.bincount(rows * g_max + group[rows, cols],
                      minlength=n * g_max).reshape(n, g_max)
  keys = np.where(np.arange(g_max)[None, :] < n_groups[:, None],
                  rng.random((n, g_max), np.float32), np.float32(2.0))
  order = np.argsort(keys, axis=1)
  sorted_sizes = np.take_along_axis(sizes, order, axis=1)
  taken_sorted = np.zeros((n, g_max), bool)
  count = np.zeros(n, np.int64)
  for k in range(g_max):
    sz = sorted_sizes[:, k]
    ok = (sz > 0) & (count + sz <= ntp)
    taken_sorted[:, k] = ok
    count += np.where(ok, sz, 0)
    if ((count >= ntp) | (k + 1 >= n_groups)).all():
      break
  taken = np.zeros((n, g_max), bool)
  np.put_along_axis(taken, order, taken_sorted, axis=1)
  selected = np.zeros((n, s), bool)
  selected[rows, cols] = taken[rows, group[rows, cols]]
  return selected


def _apply(tokens, positions, spec, rng) -> MaskedBatch:
  """80/10/10 replacement at sorted `positions` [N, P] (padding = S)."""
  n, s = tokens.shape
  valid = positions < s
  pos = np.where(valid, positions, 0)
  labels = np.take_along_axis(tokens, pos, axis=1) * valid
  u = rng.random(positions.shape, np.float32)
  replacement = np.where(u < 0.8, spec.mask_id, labels)
  rand = (u >= 0.9) & valid
  replacement[rand] = spec.random_ids[
      rng.integers(0, len(spec.random_ids), int(rand.sum()))]
  input_ids = tokens.copy()
  rows = np.broadcast_to(np.arange(n)[:, None], positions.shape)
  input_ids[rows[valid], pos[valid]] = replacement[valid]
  return MaskedBatch(input_ids=input_ids, positions=pos.astype(np.int32),
                     label_ids=labels.astype(np.int32),
                     weights=valid.astype(np.float32))


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
