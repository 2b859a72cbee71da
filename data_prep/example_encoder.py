"""Any `tf.train.Example`s of fixed-length features, encoded with NumPy.

The generic encoder (the reference engine's and the tests'; the pretraining
writer's own batches are encoded by `writer.encode_pretraining_batch`). Every
feature has a fixed length per row, so the wire format is a few varint
columns, built for the whole batch at once; the bytes parse identically to
`tf.train.Example.SerializeToString`'s.
"""

from __future__ import annotations

import numpy as np


def _varint_scalar(n: int) -> bytes:
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _varint_len(n: int) -> int:
  return max(1, (n.bit_length() + 6) // 7)


_TABLE_LIMIT = 1 << 21  # values below this encode in <= 3 bytes via a table
_TABLES: dict = {}


def _varint_tables(size: int):
  """For 0..size-1: varint bytes packed little-endian in a uint32, and a
  uint32 whose bytes are 1 where the varint has a byte (cached, grown)."""
  if _TABLES.get("size", 0) < size:
    size = min(_TABLE_LIMIT, max(size, 2 * _TABLES.get("size", 0), 1 << 15))
    v = np.arange(size, dtype=np.uint32)
    nbytes = 1 + (v >= 1 << 7).astype(np.uint32) + (v >= 1 << 14)
    packed = ((v & 0x7F) | (((v >> 7) & 0x7F) << 8) | (((v >> 14) & 0x7F) << 16)
              | ((nbytes > 1) << 7) | ((nbytes > 2) << 15))
    valid = 1 | ((nbytes > 1).astype(np.uint32) << 8) | ((nbytes > 2) << 16)
    _TABLES.update(size=size, packed=packed.astype("<u4"),
                   valid=valid.astype("<u4"), nbytes=nbytes.astype(np.int64))
  return _TABLES["packed"], _TABLES["valid"], _TABLES["nbytes"]


def _varint_payload(values: np.ndarray) -> tuple[bytes, np.ndarray]:
  """Packed varints of each row of non-negative ints: (all rows' bytes back
  to back, bytes per row)."""
  n = len(values)
  top = int(values.max()) if values.size else 0
  if top < _TABLE_LIMIT:
    packed, valid, nbytes = _varint_tables(top + 1)
    idx = values.astype(np.intp)
    b = packed[idx].view(np.uint8)
    keep = valid[idx].view(np.bool_)
    return b[keep].tobytes(), nbytes[idx].reshape(n, -1).sum(axis=1)
  v = values.astype(np.uint64)
  width = _varint_len(top)
  nb = np.ones(v.shape, np.uint8)
  for k in range(1, width):
    nb += v >= np.uint64(1 << (7 * k))
  shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
  b = ((v[..., None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
  b |= (np.arange(width) < (nb[..., None] - 1)).astype(np.uint8) << 7
  keep = np.arange(width) < nb[..., None]
  return b[keep].tobytes(), nb.reshape(n, -1).sum(axis=1, dtype=np.int64)


_HEADERS: dict = {}


class _Feature:
  """One `features.feature` map entry: header bytes as a function of the
  payload length, and the payload of each row."""

  def __init__(self, name: str, values: np.ndarray):
    self.key = b"\x0a" + _varint_scalar(len(name)) + name.encode()
    n = len(values)
    values = values.reshape(n, -1)
    if values.dtype.kind == "f":
      self.tag = 0x12  # Feature.float_list
      self.fixed = values.astype("<f4").view(np.uint8).reshape(n, -1)
    else:
      self.tag = 0x1A  # Feature.int64_list
      if values.size and values.min() < 0:
        raise ValueError(f"feature {name}: negative ints are not supported.")
      if not values.size or values.max() < 128:
        self.fixed = values.astype(np.uint8)
      else:
        self.fixed = None
        self.data, self.lengths = _varint_payload(values)
        self.ends = np.cumsum(self.lengths)
    if self.fixed is not None:
      self.lengths = np.full(n, self.fixed.shape[1], np.int64)
    self._headers = _HEADERS.setdefault((self.key, self.tag), {})

  def header(self, plen: int) -> bytes:
    """Map entry bytes before the payload, for a payload of `plen` bytes."""
    h = self._headers.get(plen)
    if h is None:
      list_len = 1 + _varint_len(plen) + plen
      feature_len = 1 + _varint_len(list_len) + list_len
      entry_len = len(self.key) + 1 + _varint_len(feature_len) + feature_len
      h = self._headers[plen] = (
          b"\x0a" + _varint_scalar(entry_len) + self.key + b"\x12" +
          _varint_scalar(feature_len) + bytes([self.tag]) +
          _varint_scalar(list_len) + b"\x0a" + _varint_scalar(plen))
    return h

  def rows(self) -> tuple[list[bytes], np.ndarray]:
    """Per row: the entry's bytes before the payload; and the entry sizes."""
    uniq, inv = np.unique(self.lengths, return_inverse=True)
    heads = [self.header(int(p)) for p in uniq]
    sizes = np.array([len(h) for h in heads], np.int64)[inv] + self.lengths
    return [heads[i] for i in inv.tolist()], sizes


def _fixed_rows(block: np.ndarray) -> list[bytes]:
  data, w = block.tobytes(), block.shape[1]
  return [data[i:i + w] for i in range(0, len(data), w)]


def encode_examples(features: dict[str, np.ndarray]) -> list[bytes]:
  """Serializes one `tf.train.Example` per row of equal-length features.

  Int features become int64_list (values must be non-negative), float ones
  float_list; map entries are written in the dict's order. Features whose
  values all fit one varint byte have a constant layout and are copied as one
  block per row; the others are varint-encoded for the whole batch with NumPy.
  Rows are then joined column by column without a Python loop per field.
  """
  feats = [_Feature(k, np.asarray(v)) for k, v in features.items()]
  n = len(feats[0].lengths)
  total = np.zeros(n, np.int64)
  columns: list[list[bytes]] = []
  run: list[np.ndarray] = []
  for f in feats + [None]:
    if f is not None and f.fixed is not None:
      head = np.frombuffer(f.header(f.fixed.shape[1]), np.uint8)
      run += [np.broadcast_to(head, (n, len(head))), f.fixed]
      total += len(head) + f.fixed.shape[1]
      continue
    if run:  # a run of fixed-layout entries: one block
      columns.append(_fixed_rows(np.concatenate(run, axis=1)))
      run = []
    if f is not None:
      heads, sizes = f.rows()
      total += sizes
      starts = (f.ends - f.lengths).tolist()
      columns.append(heads)
      columns.append([f.data[a:b] for a, b in zip(starts, f.ends.tolist())])
  uniq, inv = np.unique(total, return_inverse=True)
  ex_heads = [b"\x0a" + _varint_scalar(int(t)) for t in uniq]
  columns.insert(0, [ex_heads[i] for i in inv.tolist()])
  return list(map(b"".join, zip(*columns)))
