r"""The README's main job: a BERT-Tiny through both phases on a CPU in minutes.

Data comes from `python -m bert_jax.demo`, which prepares the embedded default
corpus (prose harvested from installed docstrings, an 8,192-entry WordPiece
vocab) at sequence lengths 128 and 512 and then trains with this config.
"""

from configs import bert


def get_config(arg: str = "tiny"):
  config = bert.get_config(arg)
  config.model.vocab_size = 8192  # the demo's trained vocabulary
  # A 10-minute run on a few MB cannot overfit: dropout off (the recipe's 0.1
  # only slows such a short run down).
  config.model.hidden_dropout_prob = 0.0
  config.model.attention_probs_dropout_prob = 0.0
  # LAMB scales each layer's step by its norm; a tiny model on a short
  # schedule takes a large rate (1e-2..2e-2 measured best, 4e-2 diverges).
  config.phase1.learning_rate = 1.5e-2
  config.optimizer.weight_decay = 0.01
  config.phase1.global_batch_size = 32
  config.phase1.num_steps = 600
  config.phase1.warmup_steps = 60
  config.phase2.global_batch_size = 8
  config.phase2.num_steps = 60
  config.phase2.warmup_steps = 10
  config.phase2.learning_rate = 2e-3
  config.checkpoint.save_every = 200
  config.checkpoint.keep_last = 2
  config.checkpoint.keep_forever = ((600, 300),)
  config.log_every = 50
  config.eval_batch_size = 32
  config.eval_steps = 20
  config.shuffle_buffer = 2_000
  return config
