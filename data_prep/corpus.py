"""Raw corpora → streams of tokenized documents.

Text files follow Google's format: one sentence per line, a line that is empty
after `strip()` ends a document, bytes are decoded as UTF-8 with invalid
sequences dropped (counted and reported here), and a non-empty line that
tokenizes to nothing is dropped without ending the document. Lines end at
b"\\n" only, as with TensorFlow's `GFile.readline`.

Large inputs are cut into work units: byte ranges that start and end at
document boundaries, so each unit can be processed independently.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Iterator, Sequence

import numpy as np

from data_prep import fileio
from data_prep import sentences as sentences_lib

_BLOCK = 8 << 20
_LINES_PER_BATCH = 4096


class InputError(ValueError):
  """Input files or datasets cannot be read as asked."""


@dataclasses.dataclass(frozen=True)
class Unit:
  """A work unit: byte ranges of text files, or a slice of a TFDS split."""
  ranges: tuple[tuple[str, int, int], ...] = ()
  tfds_split: str | None = None


@dataclasses.dataclass
class Document:
  tokens: np.ndarray  # int32, all sentences back to back
  sentence_lengths: np.ndarray  # int64, one entry per sentence (all > 0)
  continuation: np.ndarray | None = None  # bool per token (Chinese WWM)
  key: float = 0.0  # in [0, 1): a hash of the text, for the held-out split


@dataclasses.dataclass
class ReadStats:
  lines: int = 0
  bytes: int = 0
  invalid_utf8_lines: int = 0
  empty_token_lines: int = 0
  documents: int = 0
  files_with_invalid_utf8: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)


def expand_inputs(patterns: str) -> list[str]:
  """Comma-separated globs → files, in order, each file once."""
  files: list[str] = []
  for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
    matched = fileio.glob(pattern)
    if not matched:
      raise InputError(f"--input_file: {pattern!r} matches no file.")
    for f in matched:
      if not fileio.readable(f):
        raise InputError(f"--input_file: {f} is not a readable file.")
      if f not in files:
        files.append(f)
  if not files:
    raise InputError("--input_file is empty; give comma-separated globs of "
                     "text files (one sentence per line, blank line between "
                     "documents).")
  return files


def _next_boundary(path: str, offset: int, size: int) -> int:
  """Start of the first line after a blank line, at or after `offset`."""
  if offset <= 0:
    return 0
  with fileio.open_file(path, "rb") as f:
    f.seek(offset - 1)
    pos = offset - 1 + len(f.readline())  # to the next line start
    while pos < size:
      line = f.readline()
      if not line:
        break
      pos += len(line)
      if not line.decode("utf-8", "ignore").strip():
        return pos
  return size


def plan_units(files: Sequence[str], n_units: int) -> list[Unit]:
  """Cuts the concatenated files into `n_units` ranges at document boundaries.

  Unit u starts at the first document boundary at or after byte
  u * total // n_units of the concatenation (file starts are boundaries too).
  """
  sizes = [fileio.size(f) for f in files]
  total = sum(sizes)
  cuts = [u * total // n_units for u in range(1, n_units)]
  units: list[list[tuple[str, int, int]]] = [[] for _ in range(n_units)]
  base = 0
  for path, size in zip(files, sizes):
    unit = sum(1 for g in cuts if g <= base)
    lo = 0
    for u, g in enumerate(cuts, start=1):
      if base < g < base + size:
        hi = max(lo, _next_boundary(path, g - base, size))
        if hi > lo:
          units[unit].append((path, lo, hi))
        unit, lo = u, hi
    if size > lo:
      units[unit].append((path, lo, size))
    base += size
  return [Unit(ranges=tuple(r)) for r in units]


def _decode_lines(block: bytes, path: str, stats: ReadStats) -> list[str]:
  try:
    return block.decode("utf-8").split("\n")
  except UnicodeDecodeError:
    out = []
    for raw in block.split(b"\n"):
      try:
        out.append(raw.decode("utf-8"))
      except UnicodeDecodeError:
        stats.invalid_utf8_lines += 1
        stats.files_with_invalid_utf8[path] += 1
        out.append(raw.decode("utf-8", "ignore"))
    return out


def iter_text_lines(ranges, stats: ReadStats) -> Iterator[str | None]:
  """Stripped lines; None marks a document boundary (also at each file end)."""
  for path, start, end in ranges:
    with fileio.open_file(path, "rb") as f:
      f.seek(start)
      remaining, carry = end - start, b""
      while remaining > 0:
        block = f.read(min(_BLOCK, remaining))
        if not block:
          break
        remaining -= len(block)
        stats.bytes += len(block)
        data = carry + block
        carry = b""
        if remaining > 0:
          cut = data.rfind(b"\n") + 1
          data, carry = data[:cut], data[cut:]
        if not data:
          continue
        lines = _decode_lines(data, path, stats)
        if data.endswith(b"\n"):
          lines.pop()
        for line in lines:
          stats.lines += 1
          line = line.strip()
          yield line if line else None
    yield None


def iter_tfds_lines(name: str, split: str, text_key: str, data_dir: str | None,
                    stats: ReadStats) -> Iterator[str | None]:
  """Sentences of each TFDS example's text field; None between examples."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f"--tfds_name={name} --tfds_split={split}: cannot load "
                     f"({type(e).__name__}: {e}).") from e
  for example in tfds.as_numpy(ds):
    if text_key not in example:
      raise InputError(f"--tfds_text_key={text_key}: dataset {name} has "
                       f"fields {sorted(example)}; pick the text field.")
    raw = example[text_key]
    stats.bytes += len(raw)
    text = raw.decode("utf-8", "ignore") if isinstance(raw, bytes) else str(raw)
    for paragraph in text.split("\n"):
      for sent in sentences_lib.split_sentences(paragraph):
        stats.lines += 1
        yield sent
    yield None


def iter_documents(lines: Iterator[str | None], tokenizer,
                   stats: ReadStats, chinese_flags=None,
                   want_keys: bool = False) -> Iterator[Document]:
  """Groups lines into documents and tokenizes them in batches."""
  pending: list[list[str]] = []
  current: list[str] = []
  n_lines = 0
  for line in lines:
    if line is None:
      if current:
        pending.append(current)
        n_lines += len(current)
        current = []
      if n_lines >= _LINES_PER_BATCH:
        yield from _tokenize_docs(pending, tokenizer, stats, chinese_flags,
                                  want_keys)
        pending, n_lines = [], 0
    else:
      current.append(line)
  if current:
    pending.append(current)
  yield from _tokenize_docs(pending, tokenizer, stats, chinese_flags, want_keys)


def _doc_key(lines: list[str]) -> float:
  h = hashlib.blake2b("\n".join(lines).encode(), digest_size=8).digest()
  return int.from_bytes(h, "little") / 2.0**64


def _tokenize_docs(docs, tokenizer, stats, chinese_flags, want_keys):
  flat = [line for doc in docs for line in doc]
  if not flat:
    return
  enc = tokenizer.encode_flat(flat, with_words=chinese_flags is not None)
  cont = None
  if chinese_flags is not None:
    cont = np.zeros(len(enc.ids), bool)
    ends = np.cumsum(enc.lengths)
    for i, line in enumerate(flat):
      a, b = ends[i] - enc.lengths[i], ends[i]
      cont[a:b] = chinese_flags.flags(line, enc.normalized[i],
                                      enc.word_index[a:b])
  lengths = enc.lengths.tolist()
  line_end = np.cumsum(enc.lengths).tolist()
  k = 0
  for doc in docs:
    n = len(doc)
    start = line_end[k] - lengths[k]
    end = line_end[k + n - 1]
    doc_lengths = enc.lengths[k:k + n]
    if 0 in lengths[k:k + n]:  # lines that tokenize to nothing are dropped
      stats.empty_token_lines += lengths[k:k + n].count(0)
      doc_lengths = doc_lengths[doc_lengths > 0]
    if len(doc_lengths):
      stats.documents += 1
      yield Document(enc.ids[start:end], doc_lengths,
                     None if cont is None else cont[start:end],
                     _doc_key(doc) if want_keys else 0.0)
    k += n
