"""The per-unit work: a slice of the corpus and a seed → serialized records.

`unit_records` is a pure function of (unit, config, unit index): it streams the
unit's documents into bounded pools, makes `dupe_factor` passes of instances
over each pool, shuffles the pool's instances, masks and encodes them in
vectorised batches. The local worker pool (`create_pretraining_data`) and the
Apache Beam pipeline both call it unchanged.

Memory is bounded by `pool_tokens` (plus one batch), not by the corpus: a pool
of consecutive documents is processed and written before the next is read.
NSP negatives are drawn from the current pool (all its documents), and the
held-out split (documents whose text hash falls below `eval_fraction`) has pools
of its own, so evaluation documents never appear in training instances.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from data_prep import corpus
from data_prep import instances as instances_lib
from data_prep import masking
from data_prep import tokenization
from data_prep import writer

ENCODE_BATCH = 2048  # instances masked and encoded per vectorised batch


@dataclasses.dataclass(frozen=True)
class PrepConfig:
  """Everything that determines the records of a unit, besides its input."""
  vocab_file: str
  tokenizer: str = "auto"
  do_lower_case: bool = True
  do_whole_word_mask: bool = False
  chinese_wwm: bool = False
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  random_seed: int = 12345
  dupe_factor: int = 10
  masked_lm_prob: float = 0.15
  masking: str = "static"  # static (Google's) | none (no masks: dynamic)
  nsp: bool = True  # sentence pairs (Google's) | one full-length segment
  short_seq_prob: float = 0.1
  eval_fraction: float = 0.0
  pool_tokens: int = 4_000_000
  tfds_name: str | None = None
  tfds_split: str = "train"
  tfds_text_key: str = "text"
  tfds_data_dir: str | None = None


@dataclasses.dataclass
class UnitStats:
  instances: dict = dataclasses.field(default_factory=lambda: {"train": 0,
                                                                "eval": 0})
  random_next: int = 0
  masked: int = 0
  tokens: int = 0
  documents: int = 0
  pools: int = 0
  single_document_pools: int = 0
  read: corpus.ReadStats = dataclasses.field(default_factory=corpus.ReadStats)

  def as_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["read"]["files_with_invalid_utf8"] = dict(
        self.read.files_with_invalid_utf8)
    return d


def warm_up(cfg: PrepConfig) -> None:
  """Loads (or compiles, on first use) the compiled kernels on a tiny pool, so
  that start-up cost is not paid inside the first unit."""
  docs = [corpus.Document(np.arange(5, 25, dtype=np.int32), np.array([8, 12]),
                          np.zeros(20, bool) if cfg.chinese_wwm else None)
          for _ in range(2)]
  pool = instances_lib.Pool.from_documents(docs)
  spans = instances_lib.build_spans(pool, 1, cfg.max_seq_length, 0.1, 0)
  batch = instances_lib.assemble(pool, spans, cfg.max_seq_length, 1, 2)
  if not cfg.nsp:
    full = instances_lib.build_full_spans(pool, 1, cfg.max_seq_length)
    instances_lib.assemble_full(pool, full, cfg.max_seq_length, 1, 2)
  ids = np.arange(30, dtype=np.int64)
  spec = masking.MaskingSpec(
      min(cfg.max_predictions_per_seq, cfg.max_seq_length - 4), 0.15, 1, 2, 3,
      ids, np.zeros(30, bool) if cfg.do_whole_word_mask else None)
  masked = masking.mask_batch(batch.tokens, batch.lengths, spec,
                              np.random.default_rng(0), batch.continuation)
  writer.encode_pretraining_batch(
      masked.input_ids, batch.lengths, batch.segment_ids, masked.positions,
      masked.label_ids, masked.weights, batch.next_sentence_labels)


def unit_seed(random_seed: int, unit_index: int) -> np.random.SeedSequence:
  return np.random.SeedSequence([random_seed, unit_index])


def masking_spec(cfg: PrepConfig, tok) -> masking.MaskingSpec:
  return masking.MaskingSpec(
      max_predictions_per_seq=cfg.max_predictions_per_seq,
      masked_lm_prob=cfg.masked_lm_prob, cls_id=tok.cls_id, sep_id=tok.sep_id,
      mask_id=tok.mask_id, random_ids=tok.random_ids,
      continuation=(tok.continuation
                    if cfg.do_whole_word_mask or cfg.chinese_wwm else None))


def _unit_lines(unit: corpus.Unit, cfg: PrepConfig, stats: corpus.ReadStats):
  if unit.tfds_split is not None:
    return corpus.iter_tfds_lines(cfg.tfds_name, unit.tfds_split,
                                  cfg.tfds_text_key, cfg.tfds_data_dir, stats)
  return corpus.iter_text_lines(unit.ranges, stats)


def unit_records(unit: corpus.Unit, unit_index: int, cfg: PrepConfig,
                 tok=None, stats: UnitStats | None = None,
                 chinese_flags=None) -> Iterator[tuple[str, int, bytes]]:
  """Yields (split, count, TFRecord-framed tf.train.Examples) per batch."""
  tok = tok or tokenization.load_tokenizer(cfg.vocab_file, cfg.do_lower_case,
                                           cfg.tokenizer)
  stats = stats if stats is not None else UnitStats()
  if cfg.chinese_wwm and chinese_flags is None:
    chinese_flags = tokenization.ChineseWordFlags()
  seq = unit_seed(cfg.random_seed, unit_index)
  np_rng = np.random.Generator(np.random.PCG64(seq))
  spec = masking_spec(cfg, tok)
  pools: dict[str, list[corpus.Document]] = {"train": [], "eval": []}
  sizes = {"train": 0, "eval": 0}
  docs = corpus.iter_documents(_unit_lines(unit, cfg, stats.read), tok,
                               stats.read, chinese_flags,
                               want_keys=cfg.eval_fraction > 0)
  for doc in docs:
    split = "eval" if doc.key < cfg.eval_fraction else "train"
    pools[split].append(doc)
    sizes[split] += len(doc.tokens)
    if sizes[split] >= cfg.pool_tokens:
      yield from _pool_records(split, pools[split], cfg, tok, spec, np_rng,
                               stats)
      pools[split], sizes[split] = [], 0
  for split in ("train", "eval"):
    if pools[split]:
      yield from _pool_records(split, pools[split], cfg, tok, spec, np_rng,
                               stats)


def _pool_records(split, docs, cfg, tok, spec, np_rng, stats):
  pool = instances_lib.Pool.from_documents(docs)
  stats.pools += 1
  stats.documents += len(docs)
  stats.tokens += len(pool.tokens)
  if len(docs) == 1:
    stats.single_document_pools += 1
  if cfg.nsp:
    spans = instances_lib.build_spans(pool, cfg.dupe_factor,
                                      cfg.max_seq_length, cfg.short_seq_prob,
                                      int(np_rng.integers(2**32)))
    assemble = instances_lib.assemble
  else:
    spans = instances_lib.build_full_spans(pool, cfg.dupe_factor,
                                           cfg.max_seq_length)
    assemble = instances_lib.assemble_full
  spans = spans.take(np_rng.permutation(len(spans)))
  for b in range(0, len(spans), ENCODE_BATCH):
    part = spans.take(np.arange(b, min(b + ENCODE_BATCH, len(spans))))
    batch = assemble(pool, part, cfg.max_seq_length, tok.cls_id, tok.sep_id)
    if cfg.masking == "none":
      masked = _unmasked(batch, spec, np_rng)
    else:
      masked = masking.mask_batch(batch.tokens, batch.lengths, spec, np_rng,
                                  batch.continuation)
    stats.instances[split] += len(part)
    stats.random_next += int(batch.next_sentence_labels.sum())
    stats.masked += int(masked.weights.sum())
    yield split, len(part), writer.encode_pretraining_batch(
        masked.input_ids, batch.lengths, batch.segment_ids, masked.positions,
        masked.label_ids, masked.weights, batch.next_sentence_labels)


def _unmasked(batch, spec, np_rng) -> masking.MaskedBatch:
  """`--masking=none`: the tokens as they are and all-zero `masked_lm_*`
  (Google's features and widths, nothing to predict). The masking seed is
  drawn all the same, so the instances equal the static run's, masks undone."""
  np_rng.integers(2**32)
  n, p = len(batch.tokens), spec.max_predictions_per_seq
  return masking.MaskedBatch(
      input_ids=np.ascontiguousarray(batch.tokens, np.int32),
      positions=np.zeros((n, p), np.int32), label_ids=np.zeros((n, p), np.int32),
      weights=np.zeros((n, p), np.float32))
