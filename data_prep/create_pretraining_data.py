r"""Raw text → masked-LM / next-sentence TFRecords in Google's format.

Drop-in for Google's `create_pretraining_data.py` (same flags, meanings and
defaults), streaming and parallel:

    python -m data_prep.create_pretraining_data \
        --input_file='wiki/*.txt' --output_dir=data/seq128 --num_shards=64 \
        --vocab_file=vocab.txt --max_seq_length=128 \
        --max_predictions_per_seq=20 --dupe_factor=5 --num_workers=8 \
        --eval_fraction=0.01

With no flags at all it runs the embedded default: it harvests English prose
from installed docstrings (`data_prep.default_corpus`), trains an uncased
WordPiece vocab on it, and writes shards to ./bert_jax_data.

The input is cut into work units at document boundaries (`--unit_mb` of text
each, at least one per shard); each unit is a pure function of its text and
`(--random_seed, unit index)`, so the output does not depend on
`--num_workers`. Units are written under a hidden parts directory and reused
when a killed run is restarted with the same flags; shards are assembled from
finished parts and renamed into place, then `metadata.json` is written.
"""

from __future__ import annotations

import json
import os
import random

from absl import flags
from absl import logging

from data_prep import cli
from data_prep import corpus
from data_prep import fileio
from data_prep import job
from data_prep import pipeline

FLAGS = flags.FLAGS

# Google's flags, same names, meanings and defaults (input/output/vocab are
# optional here only because the embedded default job fills them in).
flags.DEFINE_string("input_file", None, "Comma-separated globs of text files.")
flags.DEFINE_string("output_file", None, "Comma-separated output TFRecords.")
flags.DEFINE_string("vocab_file", None, "vocab.txt (WordPiece) or a "
                    "SentencePiece .model; trained on the input if omitted.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents.")
flags.DEFINE_bool("do_whole_word_mask", False, "Mask whole words (## groups).")
flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Max masked positions.")
flags.DEFINE_integer("random_seed", 12345, "Random seed.")
flags.DEFINE_integer("dupe_factor", 10, "Passes over the input, each with "
                     "fresh segmentation and masks.")
flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
flags.DEFINE_float("short_seq_prob", 0.1, "Probability of a shorter target.")
# Additions.
flags.DEFINE_enum("masking", "static", ["static", "none"], "static: "
                  "Google's masks, fixed in the shards; none: the same "
                  "features with masked_lm_* all zero, for training with "
                  "phaseN.masking=dynamic (masks drawn at each step).")
flags.DEFINE_bool("nsp", True, "Sentence pairs with next-sentence labels "
                  "(Google's); False: one segment of whole sentences per "
                  "example, filled to --max_seq_length across documents "
                  "(a [SEP] between them; RoBERTa's FULL-SENTENCES), label 0, "
                  "for model.nsp=False (--short_seq_prob is not used).")
flags.DEFINE_string("output_dir", None, "Write train-NNNNN-of-NNNNN.tfrecord "
                    "shards (and eval-… shards) plus metadata.json here.")
flags.DEFINE_integer("num_shards", 1, "Train shards with --output_dir.")
flags.DEFINE_bool("overwrite", False, "Remove train-*/eval-* shards in "
                  "--output_dir that this job does not write (an earlier "
                  "run's); without it such shards are refused.")
flags.DEFINE_integer("num_eval_shards", 1, "Eval shards with --output_dir.")
flags.DEFINE_string("eval_output_file", None, "Comma-separated eval outputs "
                    "(with --output_file and --eval_fraction).")
flags.DEFINE_float("eval_fraction", 0.0, "Fraction of documents held out "
                   "for evaluation (chosen by a hash of their text).")
flags.DEFINE_integer("num_workers", 1, "Processes; 0 = one per CPU core.")
flags.DEFINE_enum("tokenizer", "auto", ["auto", "wordpiece", "sentencepiece",
                                        "hf_json"],
                  "Vocab type; auto: SentencePiece for *.model, a Hugging "
                  "Face tokenizer.json (hf_json) for *.json files.")
flags.DEFINE_bool("chinese_wwm", False, "Chinese whole-word masking: segment "
                  "with jieba and mask each word's characters together.")
flags.DEFINE_string("tfds_name", None, "Read a TFDS dataset instead of files.")
flags.DEFINE_string("tfds_split", "train", "TFDS split.")
flags.DEFINE_string("tfds_text_key", "text", "TFDS text feature.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
flags.DEFINE_enum("engine", "fast", ["fast", "reference"], "fast: streaming "
                  "and parallel; reference: Google's exact RNG order, in RAM.")
flags.DEFINE_integer("pool_tokens", 4_000_000, "Tokens per document pool: "
                     "NSP negatives come from the pool; bounds memory.")
flags.DEFINE_float("unit_mb", 32.0, "MB of input text per work unit.")
flags.DEFINE_integer("vocab_size", 8192, "Size of the vocab trained when "
                     "--vocab_file is omitted.")
flags.DEFINE_bool("shuffle_input_files", False, "Shuffle the input files "
                  "(seeded by --random_seed) before cutting work units, so "
                  "document pools, and NSP negatives, mix files from across "
                  "the corpus rather than neighbours in glob order.")
flags.DEFINE_float("default_corpus_mb", 6.0, "Size of the harvested default "
                   "corpus used when --input_file is omitted.")


def _default_corpus(out_dir: str) -> str:
  """The embedded default: prose harvested from installed docstrings."""
  from data_prep import default_corpus  # pylint: disable=g-import-not-at-top
  fileio.makedirs(out_dir)
  path = os.path.join(out_dir, "default_corpus.txt")
  if not os.path.exists(path):
    logging.info("No --input_file: harvesting the default corpus into %s", path)
    logging.info("default corpus: %s", default_corpus.write_corpus(
        path, FLAGS.default_corpus_mb))
  return path


def _default_vocab(out_dir: str, files: list[str]) -> str:
  """A WordPiece vocab trained on the input, when --vocab_file is omitted."""
  from data_prep import build_vocab  # pylint: disable=g-import-not-at-top
  path = os.path.join(out_dir, "vocab.txt")
  if not os.path.exists(path):
    logging.info("No --vocab_file: training a %d-entry WordPiece vocab on the "
                 "input into %s", FLAGS.vocab_size, path)
    fileio.makedirs(out_dir)
    build_vocab.train_wordpiece(files, path, FLAGS.vocab_size,
                                FLAGS.do_lower_case)
  return path


def _split(value: str | None) -> tuple[str, ...]:
  return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def config_from_flags() -> tuple[pipeline.PrepConfig, list[str], job.Outputs]:
  """The parsed flags as (config, input files, outputs); fills in the
  embedded default corpus and vocab when --input_file / --vocab_file are
  omitted. Shared with `data_prep.beam_pipeline`."""
  outputs = job.Outputs(
      output_dir=FLAGS.output_dir, output_file=_split(FLAGS.output_file),
      eval_output_file=_split(FLAGS.eval_output_file),
      num_shards=FLAGS.num_shards, num_eval_shards=FLAGS.num_eval_shards,
      unit_mb=FLAGS.unit_mb, overwrite=FLAGS.overwrite)
  if not (FLAGS.output_dir or outputs.output_file):
    logging.warning("No --output_dir (or --output_file): writing to %s.",
                    os.path.abspath("bert_jax_data"))
  out_dir = FLAGS.output_dir or (
      os.path.dirname(outputs.output_file[0]) if outputs.output_file
      else "bert_jax_data") or "."
  files: list[str] = []
  if not FLAGS.tfds_name:
    files = corpus.expand_inputs(FLAGS.input_file or _default_corpus(out_dir))
    if FLAGS.shuffle_input_files:
      random.Random(FLAGS.random_seed).shuffle(files)
  vocab_file = FLAGS.vocab_file
  if not vocab_file:
    if FLAGS.tfds_name:
      raise job.FlagError("--vocab_file is required with --tfds_name.")
    vocab_file = _default_vocab(out_dir, files)
  cfg = pipeline.PrepConfig(
      vocab_file=vocab_file, tokenizer=FLAGS.tokenizer,
      do_lower_case=FLAGS.do_lower_case,
      do_whole_word_mask=FLAGS.do_whole_word_mask or FLAGS.chinese_wwm,
      chinese_wwm=FLAGS.chinese_wwm, max_seq_length=FLAGS.max_seq_length,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      random_seed=FLAGS.random_seed, dupe_factor=FLAGS.dupe_factor,
      masked_lm_prob=FLAGS.masked_lm_prob, masking=FLAGS.masking,
      nsp=FLAGS.nsp, short_seq_prob=FLAGS.short_seq_prob,
      eval_fraction=FLAGS.eval_fraction, pool_tokens=FLAGS.pool_tokens,
      tfds_name=FLAGS.tfds_name, tfds_split=FLAGS.tfds_split,
      tfds_text_key=FLAGS.tfds_text_key, tfds_data_dir=FLAGS.tfds_data_dir)
  return cfg, files, outputs


def main(argv):
  del argv
  cfg, files, outputs = config_from_flags()
  metadata = job.generate(cfg, files, outputs,
                          FLAGS.num_workers or os.cpu_count() or 1,
                          FLAGS.engine)
  print(json.dumps({k: metadata[k] for k in ("splits", "stats", "seconds")},
                   indent=1))


def run():
  # Flag, input and vocab errors are ValueErrors: one line each, not a
  # traceback (data_prep/cli.py).
  cli.run(main, errors=(ValueError, OSError))


if __name__ == "__main__":
  run()
