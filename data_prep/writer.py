"""Masked batches → serialized `tf.train.Example`s → TFRecord files.

`encode_pretraining_batch` writes Google's seven features for a whole batch
in one compiled pass (protobuf bytes, TFRecord framing and the CRC-32Cs):
the bytes are what `tf.train.Example.SerializeToString` would produce up to
map order, and parse identically. Other records (the reference engine's,
encoded by `example_encoder`) are framed by `frame_records`, with the
`google-crc32c` C library. `read_records` checks both CRCs;
`AtomicWriter` writes under a temporary name, renamed once complete.
"""

from __future__ import annotations

import itertools
import struct
from typing import Iterable, Sequence

import google_crc32c
import numba
import numpy as np

from data_prep import fileio

_MASK_DELTA = 0xA282EAD8


def mask_crc(crc):
  """TFRecord's masked CRC: rotated right by 15 bits, plus a constant (an int
  or a NumPy uint64 array; the compiled framer inlines the same)."""
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
  return mask_crc(google_crc32c.value(data))


_GOOGLE_KEYS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


def encode_pretraining_batch(input_ids: np.ndarray, lengths: np.ndarray,
                             segment_ids: np.ndarray, positions: np.ndarray,
                             label_ids: np.ndarray, weights: np.ndarray,
                             next_sentence_labels: np.ndarray) -> bytes:
  """Google's seven-feature Examples for a batch, TFRecord-framed.

  Compiled: each record's protobuf bytes (map entries in Google's order) and
  its 8-byte length are written into one buffer, leaving the two CRC slots,
  which a compiled slicing-by-8 CRC-32C then fills.
  """
  keys = np.frombuffer(b"".join(k.encode() for k in _GOOGLE_KEYS), np.uint8)
  key_len = np.array([len(k) for k in _GOOGLE_KEYS], np.int64)
  n, s = input_ids.shape
  buf, starts, sizes = _encode_kernel(
      input_ids, lengths.astype(np.int64), segment_ids, positions, label_ids,
      weights, next_sentence_labels.reshape(n).astype(np.int64), keys, key_len)
  _frame_crcs(buf, starts, sizes)
  return buf.tobytes()


def _crc32c_tables() -> np.ndarray:
  """Slicing-by-8 tables for CRC-32C (Castagnoli, reflected 0x82F63B78)."""
  t = np.zeros((8, 256), np.uint32)
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    t[0, i] = c
  for k in range(1, 8):
    t[k] = (t[k - 1] >> 8) ^ t[0][t[k - 1] & 0xFF]
  return t


_CRC_TABLES = _crc32c_tables()


@numba.njit(cache=True)
def _crc32c(buf, start, end, t):  # pragma: no cover - compiled
  crc = np.uint32(0xFFFFFFFF)
  i = start
  while i + 8 <= end:
    lo = crc ^ (np.uint32(buf[i]) | (np.uint32(buf[i + 1]) << 8) |
                (np.uint32(buf[i + 2]) << 16) | (np.uint32(buf[i + 3]) << 24))
    crc = (t[7, lo & 0xFF] ^ t[6, (lo >> 8) & 0xFF] ^
           t[5, (lo >> 16) & 0xFF] ^ t[4, lo >> 24] ^
           t[3, buf[i + 4]] ^ t[2, buf[i + 5]] ^ t[1, buf[i + 6]] ^
           t[0, buf[i + 7]])
    i += 8
  while i < end:
    crc = t[0, (crc ^ buf[i]) & 0xFF] ^ (crc >> 8)
    i += 1
  return crc ^ np.uint32(0xFFFFFFFF)


@numba.njit(cache=True)
def _put_masked_crc(buf, pos, crc):  # pragma: no cover - compiled
  crc = np.uint32(((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA))
  for b in range(4):
    buf[pos + b] = (crc >> (8 * b)) & 0xFF


@numba.njit(cache=True)
def _frame_crcs_kernel(buf, starts, sizes, t):  # pragma: no cover - compiled
  for r in range(len(starts)):
    a = starts[r]
    _put_masked_crc(buf, a - 4, _crc32c(buf, a - 12, a - 4, t))
    _put_masked_crc(buf, a + sizes[r], _crc32c(buf, a, a + sizes[r], t))


def _frame_crcs(buf, starts, sizes):
  _frame_crcs_kernel(buf, starts, sizes, _CRC_TABLES)


@numba.njit(cache=True)
def _vsize(v):  # pragma: no cover - compiled
  n = 1
  while v >= 128:
    v >>= 7
    n += 1
  return n


@numba.njit(cache=True)
def _put_varint(buf, pos, v):  # pragma: no cover - compiled
  while v >= 128:
    buf[pos] = (v & 0x7F) | 0x80
    v >>= 7
    pos += 1
  buf[pos] = v
  return pos + 1


@numba.njit(cache=True)
def _put_header(buf, pos, keys, key_start, key_len, tag, payload_len):  # pragma: no cover
  """A Features map entry up to its payload; returns the payload position."""
  list_len = 1 + _vsize(payload_len) + payload_len
  feature_len = 1 + _vsize(list_len) + list_len
  entry_len = (1 + _vsize(key_len) + key_len) + (1 + _vsize(feature_len) +
                                                 feature_len)
  buf[pos] = 0x0A
  pos = _put_varint(buf, pos + 1, entry_len)
  buf[pos] = 0x0A
  pos = _put_varint(buf, pos + 1, key_len)
  buf[pos:pos + key_len] = keys[key_start:key_start + key_len]
  pos += key_len
  buf[pos] = 0x12
  pos = _put_varint(buf, pos + 1, feature_len)
  buf[pos] = tag
  pos = _put_varint(buf, pos + 1, list_len)
  buf[pos] = 0x0A
  return _put_varint(buf, pos + 1, payload_len)


@numba.njit(cache=True)
def _entry_size(key_len, payload_len):  # pragma: no cover - compiled
  list_len = 1 + _vsize(payload_len) + payload_len
  feature_len = 1 + _vsize(list_len) + list_len
  entry_len = 1 + _vsize(key_len) + key_len + 1 + _vsize(feature_len) + feature_len
  return 1 + _vsize(entry_len) + entry_len


@numba.njit(cache=True)
def _encode_kernel(ids, lengths, segs, positions, labels, weights, nsp, keys,
                   key_len):  # pragma: no cover - compiled
  n, s = ids.shape
  p = positions.shape[1]
  key_start = np.zeros(8, np.int64)
  for k in range(7):
    key_start[k + 1] = key_start[k] + key_len[k]
  bound = 16 + 10 * (3 * s + 3 * p + 1) + 4 * p + 7 * 64
  buf = np.zeros(n * bound, np.uint8)
  starts = np.empty(n, np.int64)
  sizes = np.empty(n, np.int64)
  pos = 0
  plen = np.empty(7, np.int64)
  for r in range(n):
    # Payload sizes of the seven features.
    length_r = lengths[r]
    plen[0] = s - length_r  # padding ids are 0: one byte each
    plen[1] = s  # input_mask: 0/1, one byte each
    plen[2] = s  # segment_ids: 0/1
    for j in range(length_r):
      plen[0] += _vsize(ids[r, j])
    plen[3] = 0
    plen[4] = 0
    for j in range(p):
      plen[3] += _vsize(positions[r, j])
      plen[4] += _vsize(labels[r, j])
    plen[5] = 4 * p
    plen[6] = _vsize(nsp[r])
    total = 0
    for k in range(7):
      total += _entry_size(key_len[k], plen[k])
    # Framing: length, length CRC slot, then the Example.
    length = 1 + _vsize(total) + total
    for b in range(8):
      buf[pos + b] = (length >> (8 * b)) & 0xFF
    pos += 12
    starts[r] = pos
    sizes[r] = length
    buf[pos] = 0x0A
    pos = _put_varint(buf, pos + 1, total)
    pos = _put_header(buf, pos, keys, key_start[0], key_len[0], 0x1A, plen[0])
    for j in range(length_r):
      pos = _put_varint(buf, pos, ids[r, j])
    pos += s - length_r  # zeros (the buffer starts zeroed)
    pos = _put_header(buf, pos, keys, key_start[1], key_len[1], 0x1A, plen[1])
    for j in range(s):
      buf[pos] = 1 if j < lengths[r] else 0
      pos += 1
    pos = _put_header(buf, pos, keys, key_start[2], key_len[2], 0x1A, plen[2])
    for j in range(s):
      buf[pos + j] = segs[r, j]
    pos += s
    pos = _put_header(buf, pos, keys, key_start[3], key_len[3], 0x1A, plen[3])
    for j in range(p):
      pos = _put_varint(buf, pos, positions[r, j])
    pos = _put_header(buf, pos, keys, key_start[4], key_len[4], 0x1A, plen[4])
    for j in range(p):
      pos = _put_varint(buf, pos, labels[r, j])
    pos = _put_header(buf, pos, keys, key_start[5], key_len[5], 0x12, plen[5])
    wbytes = weights[r].view(np.uint8)
    buf[pos:pos + 4 * p] = wbytes
    pos += 4 * p
    pos = _put_header(buf, pos, keys, key_start[6], key_len[6], 0x1A, plen[6])
    pos = _put_varint(buf, pos, nsp[r])
    pos += 4  # data CRC slot
  return buf[:pos], starts, sizes


def frame_records(records: Sequence[bytes]) -> bytes:
  """TFRecord framing for serialized records: length, masked CRC-32C of the
  length, data, masked CRC-32C of the data (CRCs in C, masking in NumPy)."""
  if not records:
    return b""
  lengths = np.fromiter(map(len, records), np.uint64, len(records))
  length_bytes = lengths.astype("<u8").tobytes()
  len_chunks = [length_bytes[i:i + 8] for i in range(0, len(length_bytes), 8)]
  len_crc = mask_crc(np.fromiter(map(google_crc32c.value, len_chunks),
                                   np.uint64, len(records)))
  data_crc = mask_crc(np.fromiter(map(google_crc32c.value, records),
                                    np.uint64, len(records)))
  len_crc_b = len_crc.astype("<u4").tobytes()
  data_crc_b = data_crc.astype("<u4").tobytes()
  return b"".join(itertools.chain.from_iterable(zip(
      len_chunks, (len_crc_b[i:i + 4] for i in range(0, len(len_crc_b), 4)),
      records, (data_crc_b[i:i + 4] for i in range(0, len(data_crc_b), 4)))))


def read_records(path: str) -> Iterable[bytes]:
  """Yields the records of a TFRecord file, checking both CRCs."""
  with fileio.open_file(path, "rb") as f:
    data = f.read()
  return iter_framed(data, path)


def iter_framed(data: bytes, name: str = "<bytes>") -> Iterable[bytes]:
  """Yields the records of TFRecord-framed bytes, checking both CRCs."""
  pos, index = 0, 0
  while pos < len(data):
    if pos + 12 > len(data):
      raise ValueError(f"{name}: truncated record header at byte {pos} "
                       f"(record {index}).")
    (n,) = struct.unpack_from("<Q", data, pos)
    (crc,) = struct.unpack_from("<I", data, pos + 8)
    if masked_crc(data[pos:pos + 8]) != crc:
      raise ValueError(f"{name}: corrupt length CRC at byte {pos} "
                       f"(record {index}).")
    body = data[pos + 12:pos + 12 + n]
    if len(body) != n or pos + 16 + n > len(data):
      raise ValueError(f"{name}: truncated record {index} at byte {pos}.")
    (crc,) = struct.unpack_from("<I", data, pos + 12 + n)
    if masked_crc(body) != crc:
      raise ValueError(f"{name}: corrupt data CRC in record {index}.")
    yield body
    pos += 16 + n
    index += 1


class AtomicWriter:
  """Writes a file under `fileio.temporary_name(path, tag)` and renames it
  when closed cleanly (streamed record by record, unlike
  `fileio.atomic_write`)."""

  def __init__(self, path: str, tag: str = "partial"):
    self.path = path
    self.tmp = fileio.temporary_name(path, tag)
    self._f = fileio.open_file(self.tmp, "wb")
    self._f.write(b"")  # tf.io.gfile creates the file on first write
    self.records = 0

  def write_records(self, records: Sequence[bytes]):
    self._f.write(frame_records(records))
    self.records += len(records)

  def write(self, data: bytes):
    self._f.write(data)

  def close(self):
    self._f.close()
    fileio.rename(self.tmp, self.path)

  def abort(self):
    self._f.close()
    if fileio.exists(self.tmp):
      fileio.remove(self.tmp)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.close()
    else:
      self.abort()
