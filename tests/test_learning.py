"""Learning regression: a tiny BERT on real English learns as fast as it did.

A change that silently slows learning (a wrong bias correction, a schedule
off by its warm-up, a broken initialiser or mask) leaves every other test
green; this one fails. The threshold was measured with `optimizer.name=adamw`
(see the constants) and sits between what the recipe reaches and what the
slower variants measured alongside reach.
"""

import os

import pytest

from bert_jax import train
from configs import bert as bert_config
from data_prep import job
from data_prep import pipeline

SEQ, PREDS, STEPS = 32, 5, 40
# Held-out MLM loss after STEPS steps from scratch (ln 30522 = 10.3),
# measured with jaxlib 0.10.2 on 8 CPU devices: this recipe (adamw, rate
# 3e-3) 6.99; at 1e-2 6.90; adamw_google 6.90; adamw at a tenth of the rate
# 9.95. A change that learns several times slower lands above the bound.
MAX_MLM_LOSS = 7.5


@pytest.fixture(scope="module")
def shards(tmp_path_factory, vocab_file, english_corpus):
  d = str(tmp_path_factory.mktemp("learning"))
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=SEQ,
                            max_predictions_per_seq=PREDS, dupe_factor=2,
                            eval_fraction=0.1)
  job.generate(cfg, [english_corpus], job.Outputs(output_dir=d, num_shards=2))
  return d


def recipe(shards: str):
  c = bert_config.get_config("tiny")
  c.model.update(hidden_size=64, num_attention_heads=2, intermediate_size=256,
                 max_position_embeddings=SEQ, initializer="normal")
  c.optimizer.name = "adamw"
  c.phase1.update(train_files=os.path.join(shards, "train-*"),
                  eval_files=os.path.join(shards, "eval-*"),
                  max_seq_length=SEQ, max_predictions_per_seq=PREDS,
                  global_batch_size=32, num_steps=STEPS, warmup_steps=5,
                  learning_rate=3e-3, schedule="linear")
  c.phase2.num_steps = 0
  c.checkpoint.update(save_every=10**6, keep_forever=(), async_save=False)
  c.eval_batch_size, c.eval_steps, c.log_every = 32, 8, STEPS
  c.shuffle_buffer = 1000
  return c


def test_held_out_mlm_loss_falls_below_the_measured_threshold(shards,
                                                              tmp_path):
  result = train.train_and_evaluate(recipe(shards), str(tmp_path))
  loss = result["eval"]["eval_mlm_loss"]
  assert loss < MAX_MLM_LOSS, (
      f"held-out MLM loss {loss:.3f} after {STEPS} steps; it was below "
      f"{MAX_MLM_LOSS} (tests/test_learning.py): learning got slower")
