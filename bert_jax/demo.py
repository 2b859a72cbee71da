r"""The embedded default job: data preparation + two-phase pretraining on CPU.

    python -m bert_jax.demo [--workdir=bert_jax_demo] [--corpus_mb=6]
        [--config.phase1.num_steps=600 ...]

Harvests the default corpus, trains a WordPiece vocab, writes seq-128 and
seq-512 shards with a 5% held-out split, pretrains `configs/demo.py` (a
BERT-Tiny; every field can be overridden with `--config.<field>=`) through
both phases with checkpoints, and prints the held-out MLM and NSP accuracy.
Rerunning the command resumes where it stopped.
"""

import json
import os
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

import configs
from data_prep import cli
from data_prep import fileio

_WORKDIR = flags.DEFINE_string("workdir", "bert_jax_demo", "Output directory.")
_CORPUS_MB = flags.DEFINE_float("corpus_mb", 6.0, "Harvested corpus size.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(configs.DIR, "demo.py"),
    "Training config (configs/demo.py); its data files are set by the demo.",
    lock_config=True)


def prepare(workdir: str, corpus_mb: float) -> dict[int, str]:
  """Default corpus → vocab → shards at seq 128 and 512; returns their dirs."""
  from data_prep import build_vocab  # pylint: disable=g-import-not-at-top
  from data_prep import default_corpus  # pylint: disable=g-import-not-at-top
  from data_prep import job  # pylint: disable=g-import-not-at-top
  from data_prep import pipeline  # pylint: disable=g-import-not-at-top
  data = os.path.join(workdir, "data")
  os.makedirs(data, exist_ok=True)
  corpus = os.path.join(data, "default_corpus.txt")
  if not os.path.exists(corpus):
    logging.info("default corpus: %s",
                 default_corpus.write_corpus(corpus, corpus_mb))
  vocab = os.path.join(data, "vocab.txt")
  if not os.path.exists(vocab):
    build_vocab.train_wordpiece([corpus], vocab, 8192)
  out = {}
  for seq, preds, dupe in ((128, 20, 3), (512, 80, 1)):
    d = os.path.join(data, f"seq{seq}")
    if not os.path.exists(os.path.join(d, "metadata.json")):
      cfg = pipeline.PrepConfig(vocab_file=vocab, max_seq_length=seq,
                                max_predictions_per_seq=preds,
                                dupe_factor=dupe, eval_fraction=0.05)
      job.generate(cfg, [corpus], job.Outputs(output_dir=d, num_shards=2),
                   workers=os.cpu_count() or 1)
    out[seq] = d
  return out


def main(argv):
  del argv
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  allocator.configure()
  workdir = fileio.resolve(_WORKDIR.value)
  dirs = prepare(workdir, _CORPUS_MB.value)
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  with open(os.path.join(workdir, "data", "vocab.txt"), encoding="utf-8") as f:
    entries = len(f.read().splitlines())
  if entries != config.model.vocab_size and not any(
      a.startswith("--config.model.vocab_size") for a in sys.argv):
    logging.info("model.vocab_size=%d: the demo's vocab has %d entries "
                 "(a small corpus fills fewer).", entries, entries)
    config.model.vocab_size = entries
  for phase, seq in (("phase1", 128), ("phase2", 512)):
    config[phase].train_files = os.path.join(dirs[seq], "train-*")
    config[phase].eval_files = os.path.join(dirs[seq], "eval-*")
  result = train.train_and_evaluate(config, os.path.join(workdir, "train"))
  summary = {phase: {k: round(v, 4) for k, v in ev.items()
                     if k.endswith(("_loss", "_accuracy", "_majority"))}
             for phase, ev in result.get("eval_by_phase", {}).items()}
  print(json.dumps({"held_out_eval": summary,
                    "checkpoints": os.path.join(workdir, "train",
                                                "checkpoints")}, indent=1))


if __name__ == "__main__":
  cli.run(main, errors=(ValueError, OSError))
