"""`--engine=reference` reproduces Google's create_pretraining_data.py."""

import random

import numpy as np
import pytest

from data_prep import pipeline
from data_prep import reference
from data_prep import tokenization


def _google_features(google, vocab_file, files, cfg):
  gtok, gcpd = google
  tok = gtok.FullTokenizer(vocab_file, cfg.do_lower_case)
  rng = random.Random(cfg.random_seed)
  insts = gcpd.create_training_instances(
      files, tok, cfg.max_seq_length, cfg.dupe_factor, cfg.short_seq_prob,
      cfg.masked_lm_prob, cfg.max_predictions_per_seq, rng)
  s, p = cfg.max_seq_length, cfg.max_predictions_per_seq
  out = {k: [] for k in ("input_ids", "input_mask", "segment_ids",
                         "masked_lm_positions", "masked_lm_ids",
                         "masked_lm_weights", "next_sentence_labels")}
  for inst in insts:
    ids = tok.convert_tokens_to_ids(inst.tokens)
    labels = tok.convert_tokens_to_ids(inst.masked_lm_labels)
    out["input_ids"].append(ids + [0] * (s - len(ids)))
    out["input_mask"].append([1] * len(ids) + [0] * (s - len(ids)))
    out["segment_ids"].append(list(inst.segment_ids) + [0] * (s - len(ids)))
    pad = p - len(labels)
    out["masked_lm_positions"].append(list(inst.masked_lm_positions) + [0] * pad)
    out["masked_lm_ids"].append(labels + [0] * pad)
    out["masked_lm_weights"].append([1.0] * len(labels) + [0.0] * pad)
    out["next_sentence_labels"].append([1 if inst.is_random_next else 0])
  return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("seed,seq,preds,dupe,short", [
    (12345, 128, 20, 2, 0.1),
    (7, 48, 7, 3, 0.3),  # short sequences: heavy truncation, many random pairs
])
def test_reference_engine_equals_google(google, vocab_file, english_corpus,
                                        seed, seq, preds, dupe, short):
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, random_seed=seed,
                            max_seq_length=seq, max_predictions_per_seq=preds,
                            dupe_factor=dupe, short_seq_prob=short)
  # A 60 KB slice keeps Google's pure-Python code fast.
  with open(english_corpus, encoding="utf-8") as f:
    text = f.read()[:60_000]
  path = english_corpus + f".{seed}.txt"
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  want = _google_features(google, vocab_file, [path], cfg)
  tok = tokenization.load_tokenizer(vocab_file)
  got = reference.reference_features([path], cfg, tok,
                                     pipeline.masking_spec(cfg, tok))
  assert len(want["input_ids"]) > 200
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
