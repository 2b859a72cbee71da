"""Reference engine: Google's `create_pretraining_data.py`, record for record.

Replays the original's single `random.Random(random_seed)` call order: read
every file into one document list (documents may continue across files, as
there), shuffle the documents, make `dupe_factor` passes creating and masking
instances one at a time, shuffle all instances, write them round-robin to the
output files. Given the same vocabulary and flags it writes the same records
as Google's script (under Python 3), which the tests check. Like the original
it holds the corpus and all instances in memory and runs on one core: use it to
validate, and the default (streaming, parallel) engine for real corpora.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from data_prep import corpus
from data_prep import instances as instances_lib
from data_prep import masking
from data_prep import example_encoder


def read_documents(files: Sequence[str], tok, stats: corpus.ReadStats):
  """Google's reader: a blank line starts a document; files do not."""
  lines = []
  for path in files:
    size = corpus.fileio.size(path)
    lines.extend(corpus.iter_text_lines(((path, 0, size),), stats))
    lines.pop()  # the file-end boundary that the streaming reader adds
  text = [l for l in lines if l is not None]
  enc = tok.encode_flat(text)
  ends = np.cumsum(enc.lengths)
  docs: list[list[int]] = [[]]  # line indices per document
  k = 0
  for line in lines:
    if line is None:
      docs.append([])
    else:
      if enc.lengths[k]:
        docs[-1].append(k)
      else:
        stats.empty_token_lines += 1
      k += 1
  return [corpus.Document(
      np.concatenate([enc.ids[ends[i] - enc.lengths[i]:ends[i]] for i in d]),
      enc.lengths[d]) for d in docs if d]


def reference_examples(files: Sequence[str], cfg, tok, spec: masking.MaskingSpec,
                       stats=None) -> list[bytes]:
  """All serialized examples in Google's final order."""
  feats = reference_features(files, cfg, tok, spec, stats)
  return example_encoder.encode_examples(feats) if len(feats["input_ids"]) else []


def reference_features(files: Sequence[str], cfg, tok,
                       spec: masking.MaskingSpec, stats=None) -> dict:
  """Google's seven features for every instance, in Google's final order."""
  read_stats = stats.read if stats is not None else corpus.ReadStats()
  documents = read_documents(files, tok, read_stats)
  rng = random.Random(cfg.random_seed)
  rng.shuffle(documents)
  pool = instances_lib.Pool.from_documents(documents)
  truncate = instances_lib.reference_truncate(rng, cfg.max_seq_length - 3)
  flat = pool.tokens.tolist()

  class _MaskOnAppend(list):
    """Masks each instance as it is made, as Google's loop does."""

    def append(self, span):
      a0, a1, b0, b1, is_random = span
      tokens = ([tok.cls_id] + flat[a0:a1] + [tok.sep_id] + flat[b0:b1] +
                [tok.sep_id])
      out, positions, labels = masking.mask_reference(tokens, spec, rng)
      super().append((out, b0, a1 - a0, positions, labels, is_random))

  rows = _MaskOnAppend()
  for _ in range(cfg.dupe_factor):
    instances_lib.pass_instances(pool, cfg.max_seq_length, cfg.short_seq_prob,
                                 rng, truncate, rows)
  rng.shuffle(rows)
  s, p = cfg.max_seq_length, cfg.max_predictions_per_seq
  n = len(rows)
  feats = {k: np.zeros((n, w), np.int64) for k, w in
           (("input_ids", s), ("input_mask", s), ("segment_ids", s),
            ("masked_lm_positions", p), ("masked_lm_ids", p))}
  feats["masked_lm_weights"] = np.zeros((n, p), np.float32)
  feats["next_sentence_labels"] = np.zeros((n, 1), np.int64)
  for r, (out, _, la, positions, labels, is_random) in enumerate(rows):
    feats["input_ids"][r, :len(out)] = out
    feats["input_mask"][r, :len(out)] = 1
    feats["segment_ids"][r, la + 2:len(out)] = 1
    feats["masked_lm_positions"][r, :len(positions)] = positions
    feats["masked_lm_ids"][r, :len(labels)] = labels
    feats["masked_lm_weights"][r, :len(labels)] = 1.0
    feats["next_sentence_labels"][r, 0] = int(is_random)
  if stats is not None:
    stats.instances["train"] += n
    stats.random_next += int(feats["next_sentence_labels"].sum())
    stats.masked += int(feats["masked_lm_weights"].sum())
    stats.documents += len(documents)
    stats.tokens += len(pool.tokens)
  return feats
