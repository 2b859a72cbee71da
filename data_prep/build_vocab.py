r"""Trains a vocabulary: a BERT WordPiece vocab.txt or a SentencePiece model.

    python -m data_prep.build_vocab --input_file='corpus/*.txt' \
        --output=vocab.txt --vocab_size=30522 [--do_lower_case=false]
    python -m data_prep.build_vocab --model=sentencepiece \
        --input_file='corpus/*.txt' --output=spm --vocab_size=32000

WordPiece: text goes through the same BasicTokenizer as the data generator
(so cased/uncased and accent stripping match), then the `tokenizers` library's
WordPiece trainer learns `##` continuation pieces. The file is laid out like
Google's: `[PAD]`, `[unused0]`…`[unused{N-1}]`, `[UNK]`, `[CLS]`, `[SEP]`,
`[MASK]`, then the learned tokens. SentencePiece: a unigram model with `[PAD]`
(id 0), `[UNK]` (id 1) and control pieces `[CLS]`, `[SEP]`, `[MASK]`, trained on
a sample of at most `--max_sentences` lines. Both read the corpus as a stream.
"""

from __future__ import annotations

import os
from typing import Iterator

from absl import flags
from absl import logging

from data_prep import cli
from data_prep import corpus
from data_prep import fileio
from data_prep import tokenization

_BATCH_LINES = 8192


def _lines(files, stats) -> Iterator[str]:
  for path in files:
    for line in corpus.iter_text_lines(((path, 0, fileio.size(path)),), stats):
      if line is not None:
        yield line


def _batches(files, stats, do_lower_case) -> Iterator[list[str]]:
  batch: list[str] = []
  for line in _lines(files, stats):
    batch.append(line)
    if len(batch) >= _BATCH_LINES:
      yield tokenization.basic_tokenize_lines(batch, do_lower_case)
      batch = []
  if batch:
    yield tokenization.basic_tokenize_lines(batch, do_lower_case)


def train_wordpiece(files: list[str], output: str, vocab_size: int = 30522,
                    do_lower_case: bool = True, num_unused: int = 99,
                    min_frequency: int = 2, limit_alphabet: int = 1000) -> int:
  """Writes a Google-layout vocab.txt; returns its number of lines."""
  from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # pylint: disable=g-import-not-at-top
  n_fixed = 5 + num_unused
  if vocab_size <= n_fixed + 1:
    raise ValueError(f"--vocab_size={vocab_size} leaves no room after the "
                     f"{n_fixed} special and [unused] entries.")
  tok = Tokenizer(models.WordPiece(unk_token="[UNK]",
                                   max_input_chars_per_word=200))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  trainer = trainers.WordPieceTrainer(
      vocab_size=vocab_size - n_fixed + 1, min_frequency=min_frequency,
      special_tokens=["[UNK]"], limit_alphabet=limit_alphabet,
      continuing_subword_prefix="##", show_progress=False)
  stats = corpus.ReadStats()
  tok.train_from_iterator(_batches(files, stats, do_lower_case), trainer)
  learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda x: x[1])
             if t not in tokenization.SPECIAL_TOKENS]
  if not learned:
    raise ValueError(f"--input_file: no text found in {files}.")
  lines = (["[PAD]"] + [f"[unused{i}]" for i in range(num_unused)] +
           ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + learned)
  fileio.write_atomic(output, "".join(t + "\n" for t in lines))
  logging.info("Wrote %s: %d entries from %d lines (%.1f MB).", output,
               len(lines), stats.lines, stats.bytes / 2**20)
  if len(lines) < vocab_size:
    logging.warning("--vocab_size=%d: the corpus filled only %d entries (each "
                    "learned piece must occur at least %d times); train on "
                    "more text, or set model.vocab_size=%d.", vocab_size,
                    len(lines), min_frequency, len(lines))
  elif len(lines) > vocab_size:
    logging.warning("--vocab_size=%d: wrote %d entries, since every character "
                    "of the corpus (up to %d) gets one; set "
                    "model.vocab_size=%d.", vocab_size, len(lines),
                    limit_alphabet, len(lines))
  return len(lines)


def train_sentencepiece(files: list[str], output_prefix: str,
                        vocab_size: int = 32000, do_lower_case: bool = True,
                        max_sentences: int = 2_000_000,
                        character_coverage: float = 0.9995) -> str:
  """Trains `<output_prefix>.model` (and `.vocab`); returns the model path."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  stats = corpus.ReadStats()
  lines = (l.lower() if do_lower_case else l for l in _lines(files, stats))
  tmp_prefix = fileio.temporary_name(output_prefix)
  spm.SentencePieceTrainer.train(
      sentence_iterator=lines, model_prefix=tmp_prefix, vocab_size=vocab_size,
      model_type="unigram", character_coverage=character_coverage,
      input_sentence_size=max_sentences, shuffle_input_sentence=True,
      pad_id=0, pad_piece="[PAD]", unk_id=1, unk_piece="[UNK]", bos_id=-1,
      eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
      num_threads=os.cpu_count() or 1, minloglevel=2)
  for ext in (".model", ".vocab"):
    fileio.rename(tmp_prefix + ext, output_prefix + ext)
  return output_prefix + ".model"


def main(argv):
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  files = corpus.expand_inputs(FLAGS.input_file)
  output = fileio.resolve(FLAGS.output)
  fileio.makedirs(os.path.dirname(output) or ".")
  if FLAGS.model == "wordpiece":
    train_wordpiece(files, output, FLAGS.vocab_size, FLAGS.do_lower_case,
                    FLAGS.num_unused, FLAGS.min_frequency)
  else:
    print(train_sentencepiece(files, output, FLAGS.vocab_size,
                              FLAGS.do_lower_case, FLAGS.max_sentences))


def _define_flags():
  """Defined on demand, so importing this module defines no flags."""
  flags.DEFINE_string("input_file", None, "Comma-separated globs of text files.")
  flags.DEFINE_string("output", "vocab.txt", "vocab.txt path (wordpiece) or "
                      "model prefix (sentencepiece).")
  flags.DEFINE_enum("model", "wordpiece", ["wordpiece", "sentencepiece"],
                    "Vocabulary type.")
  flags.DEFINE_integer("vocab_size", 30522, "Total entries, specials included.")
  flags.DEFINE_bool("do_lower_case", True, "Lower-case (and strip accents).")
  flags.DEFINE_integer("num_unused", 99, "[unusedN] slots after [PAD].")
  flags.DEFINE_integer("min_frequency", 2, "WordPiece: minimum pair count.")
  flags.DEFINE_integer("max_sentences", 2_000_000,
                       "SentencePiece: lines sampled for training.")
  flags.mark_flag_as_required("input_file")


def run():
  _define_flags()
  cli.run(main, errors=(ValueError, OSError))


if __name__ == "__main__":
  run()
