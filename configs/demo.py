r"""The README's main job: a BERT-Tiny through both phases on a CPU in minutes.

Data comes from `python -m bert_jax.demo`, which prepares the embedded default
corpus (prose harvested from installed docstrings, an 8,192-entry WordPiece
vocab) at sequence lengths 128 and 512 and then trains with this config.
"""

from configs import bert


def get_config(arg: str = "tiny"):
  config = bert.get_config(arg)
  config.model.vocab_size = 8192  # the demo's trained vocabulary
  config.model.hidden_dropout_prob = 0.1
  config.phase1.learning_rate = 2e-3  # small model, short run
  config.optimizer.weight_decay = 0.01
  config.phase1.global_batch_size = 32
  config.phase1.num_steps = 600
  config.phase1.warmup_steps = 60
  config.phase2.global_batch_size = 8
  config.phase2.num_steps = 60
  config.phase2.warmup_steps = 10
  config.phase2.learning_rate = 5e-4
  config.checkpoint.save_every = 200
  config.checkpoint.keep_last = 2
  config.checkpoint.keep_forever = ((600, 300),)
  config.log_every = 50
  config.eval_batch_size = 32
  config.eval_steps = 20
  config.shuffle_buffer = 2_000
  return config
