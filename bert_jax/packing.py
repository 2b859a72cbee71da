"""Sequence packing: several short pretraining examples in one row.

Rows of a fixed length waste the padding after short examples (the ones
`short_seq_prob` makes, and every document's last chunk). Packing puts up to
`max_per_row` examples end to end in one row, so a step of the same shape
carries more real tokens. It is an option (`phaseN.packing`), off by default:
Google's BERT does not pack. The model keeps packed examples apart exactly
(see `models.Bert`): attention is block-diagonal over `pack_ids`, positions
restart at each example (`position_ids`), and each example's own [CLS]
(`cls_positions`) feeds the NSP head; so a packed example gets the same
outputs as it would alone in a padded row (tested).

The packer is online and deterministic: examples arrive in stream order and
go into the first of `open_rows` open rows where they fit (tokens, masked
positions and the example count); when none fits, the fullest open row is
emitted to make room. Rows are also emitted as soon as they are full.

A packed row holds, besides Google's features (`input_ids`, `input_mask`,
`segment_ids`, `masked_lm_*`, with masked positions shifted to the row):
`position_ids` and `pack_ids` [S] (1, 2, … per example, 0 on padding), and
`next_sentence_labels`, `cls_positions`, `nsp_weights` [max_per_row] (weight
0 where the row has fewer examples).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

TOKEN_FEATURES = ("input_ids", "input_mask", "segment_ids", "position_ids",
                  "pack_ids")
PRED_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
NSP_FEATURES = ("next_sentence_labels", "cls_positions", "nsp_weights")


class PackingError(ValueError):
  """Examples that cannot be packed (not in Google's prefix layout)."""


def feature_shapes(seq_len: int, max_preds: int, max_per_row: int) -> dict:
  """name → (per-row length, numpy dtype) of a packed row."""
  shapes = {k: (seq_len, np.int32) for k in TOKEN_FEATURES}
  shapes.update({k: (max_preds, np.int32) for k in PRED_FEATURES})
  shapes["masked_lm_weights"] = (max_preds, np.float32)
  shapes.update({k: (max_per_row, np.int32) for k in NSP_FEATURES})
  shapes["nsp_weights"] = (max_per_row, np.float32)
  return shapes


def _lengths(chunk: dict) -> tuple[np.ndarray, np.ndarray]:
  """Real tokens and masked positions per example; checks both are prefixes
  (as Google's writer and ours lay them out)."""
  mask = np.asarray(chunk["input_mask"])
  weights = np.asarray(chunk["masked_lm_weights"])
  lengths = mask.sum(axis=1)
  preds = (weights > 0).sum(axis=1)
  if np.any(lengths == 0):
    raise PackingError("a record has no tokens (input_mask all 0); the "
                       "records are malformed.")
  if not np.array_equal(mask != 0,
                        np.arange(mask.shape[1]) < lengths[:, None]):
    raise PackingError("packing needs input_mask to be 1 on a prefix of each "
                       "row (Google's layout); these records are not. Turn "
                       "packing off (phaseN.packing=0) for this data.")
  if not np.array_equal(weights > 0,
                        np.arange(weights.shape[1]) < preds[:, None]):
    raise PackingError("packing needs the masked positions first and the "
                       "padding (weight 0) after them; these records are not "
                       "laid out so. Turn packing off (phaseN.packing=0).")
  pos = np.asarray(chunk["masked_lm_positions"])
  if np.any(np.where(weights > 0, pos, 0) >= lengths[:, None]):
    raise PackingError("a masked position lies in the padding; the records "
                       "are inconsistent.")
  return lengths, preds


class Packer:
  """Packs a stream of parsed example chunks into batches of rows."""

  def __init__(self, seq_len: int, max_preds: int, max_per_row: int,
               rows_per_batch: int, open_rows: int = 32):
    if max_per_row < 1 or open_rows < 1 or rows_per_batch < 1:
      raise ValueError("packing: max_per_row, open_rows and rows_per_batch "
                       "must be ≥ 1.")
    self.s, self.p, self.k = seq_len, max_preds, max_per_row
    self.rows = rows_per_batch
    # The open rows, one array per feature group (fewer copies per example):
    # tokens [R, 5, S] in TOKEN_FEATURES order, predictions [R, 2, P]
    # (positions, ids), weights [R, P], NSP [R, 3, K] in NSP_FEATURES order.
    self.tok = np.zeros((open_rows, len(TOKEN_FEATURES), seq_len), np.int32)
    self.pred = np.zeros((open_rows, 2, max_preds), np.int32)
    self.wt = np.zeros((open_rows, max_preds), np.float32)
    self.nsp = np.zeros((open_rows, len(NSP_FEATURES), max_per_row), np.int32)
    self.used_t = [0] * open_rows  # tokens used per open row
    self.used_p = [0] * open_rows  # masked positions used
    self.count = [0] * open_rows  # examples held (0: the slot is free)
    self.out = self._new_batch()
    self.n_out = 0
    self.ready: list[dict] = []

  def _new_batch(self):
    return (np.zeros((self.rows,) + self.tok.shape[1:], np.int32),
            np.zeros((self.rows,) + self.pred.shape[1:], np.int32),
            np.zeros((self.rows,) + self.wt.shape[1:], np.float32),
            np.zeros((self.rows,) + self.nsp.shape[1:], np.int32))

  def add(self, chunk: dict) -> list[dict]:
    """Takes a chunk of examples ([N, …] arrays in Google's features);
    returns the batches completed by it."""
    lengths, preds = _lengths(chunk)
    n_ex, s = lengths.shape[0], self.s
    # Per example, its row contents before placement: ids, mask, token types,
    # positions 0…, and 1 on real tokens (times the pack id when placed).
    mask = np.asarray(chunk["input_mask"], np.int32)
    tok = np.stack([np.asarray(chunk["input_ids"], np.int32), mask,
                    np.asarray(chunk["segment_ids"], np.int32),
                    np.broadcast_to(np.arange(s, dtype=np.int32), (n_ex, s)),
                    mask], axis=1)
    pred = np.stack([np.asarray(chunk["masked_lm_positions"], np.int32),
                     np.asarray(chunk["masked_lm_ids"], np.int32)], axis=1)
    wt = np.asarray(chunk["masked_lm_weights"], np.float32)
    nsp = np.asarray(chunk["next_sentence_labels"], np.int32).reshape(-1)
    k, p = self.k, self.p
    for i, (n, q) in enumerate(zip(lengths.tolist(), preds.tolist())):
      r = self._find(n, q)
      t0, p0, c = self.used_t[r], self.used_p[r], self.count[r]
      row = self.tok[r]
      row[:, t0:t0 + n] = tok[i, :, :n]
      if c:
        row[4, t0:t0 + n] = c + 1
      if q:
        self.pred[r, :, p0:p0 + q] = pred[i, :, :q]
        self.pred[r, 0, p0:p0 + q] += t0
        self.wt[r, p0:p0 + q] = wt[i, :q]
      self.nsp[r, :, c] = (nsp[i], t0, 1)
      self.used_t[r], self.used_p[r], self.count[r] = t0 + n, p0 + q, c + 1
      if t0 + n == s or c + 1 == k or p0 + q == p:
        self._emit(r)
    ready, self.ready = self.ready, []
    return ready

  def _find(self, n: int, q: int) -> int:
    """The open row to put an example of n tokens, q predictions in."""
    free = -1
    for r, c in enumerate(self.count):
      if c == 0:
        if free < 0:
          free = r
      elif (self.used_t[r] + n <= self.s and self.used_p[r] + q <= self.p
            and c < self.k):
        return r
    if free < 0:  # all open rows in use and none fits: emit the fullest
      free = max(range(len(self.count)), key=self.used_t.__getitem__)
      self._emit(free)
    return free

  def _emit(self, r: int) -> None:
    j = self.n_out
    for dst, src in zip(self.out, (self.tok, self.pred, self.wt, self.nsp)):
      dst[j] = src[r]
      src[r] = 0
    self.used_t[r] = self.used_p[r] = self.count[r] = 0
    self.n_out += 1
    if self.n_out == self.rows:
      self.ready.append(self._as_features(self.out))
      self.out, self.n_out = self._new_batch(), 0

  @staticmethod
  def _as_features(arrays) -> dict:
    tok, pred, wt, nsp = arrays
    out = {name: tok[:, i] for i, name in enumerate(TOKEN_FEATURES)}
    out["masked_lm_positions"], out["masked_lm_ids"] = pred[:, 0], pred[:, 1]
    out["masked_lm_weights"] = wt
    out["next_sentence_labels"], out["cls_positions"] = nsp[:, 0], nsp[:, 1]
    out["nsp_weights"] = nsp[:, 2].astype(np.float32)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}

  def flush(self, partial: bool = False) -> list[dict]:
    """At the end of a finite stream: emits the open rows (in slot order) and
    returns the completed batches. A last partial batch is dropped, as the
    unpacked pipeline drops its remainder, or with `partial` returned padded
    with empty rows (all features 0: no tokens, no weights)."""
    for r, c in enumerate(self.count):
      if c:
        self._emit(r)
    if partial and self.n_out:
      self.ready.append(self._as_features(self.out))
      self.out, self.n_out = self._new_batch(), 0
    ready, self.ready = self.ready, []
    return ready


def pack(chunks: Iterable[dict], seq_len: int, max_preds: int,
         max_per_row: int, rows_per_batch: int,
         open_rows: int = 32) -> Iterator[dict]:
  """Batches of `rows_per_batch` packed rows from parsed example chunks."""
  packer = Packer(seq_len, max_preds, max_per_row, rows_per_batch, open_rows)
  for chunk in chunks:
    yield from packer.add(chunk)
  yield from packer.flush()


def unpack(batch: dict) -> list[dict]:
  """Packed rows → the examples in them, in Google's unpacked layout (each
  in a padded row of its own), in row order. For tests and inspection."""
  out = []
  s = batch["input_ids"].shape[1]
  p = batch["masked_lm_ids"].shape[1]
  for r in range(batch["input_ids"].shape[0]):
    for c in np.flatnonzero(batch["nsp_weights"][r] > 0):
      start = int(batch["cls_positions"][r, c])
      where = np.flatnonzero(batch["pack_ids"][r] == c + 1)
      n = len(where)
      ex = {k: np.zeros(s, np.int32) for k in ("input_ids", "input_mask",
                                                "segment_ids")}
      ex["input_ids"][:n] = batch["input_ids"][r, where]
      ex["input_mask"][:n] = 1
      ex["segment_ids"][:n] = batch["segment_ids"][r, where]
      sel = ((batch["masked_lm_weights"][r] > 0) &
             (batch["masked_lm_positions"][r] >= start) &
             (batch["masked_lm_positions"][r] < start + n))
      q = int(sel.sum())
      ex["masked_lm_positions"] = np.zeros(p, np.int32)
      ex["masked_lm_ids"] = np.zeros(p, np.int32)
      ex["masked_lm_weights"] = np.zeros(p, np.float32)
      ex["masked_lm_positions"][:q] = batch["masked_lm_positions"][r, sel] - start
      ex["masked_lm_ids"][:q] = batch["masked_lm_ids"][r, sel]
      ex["masked_lm_weights"][:q] = batch["masked_lm_weights"][r, sel]
      ex["next_sentence_labels"] = np.array(
          [batch["next_sentence_labels"][r, c]], np.int32)
      out.append(ex)
  return out
