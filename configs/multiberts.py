r"""The MultiBERTs recipe (Sellam et al., 2021): one BERT-Base per seed.

    python -m bert_jax.main --config=configs/multiberts.py:3 --workdir=runs/seed_3 \
        --config.phase1.train_files='gs://b/data/seq512/train-*'
    python -m bert_jax.seed_sweep --config=configs/multiberts.py \
        --sweep_dir=runs/multiberts --seeds=0-24 ...     # all seeds

Differences from the original BERT recipe: sequence length 512 for all
2,000,000 steps (no seq-128 phase), batch 256, Google's AdamW (no bias
correction) at 1e-4 with 10,000 warm-up steps and linear decay, and the
release's checkpoint schedule kept forever: step 0 (the initialisation), every
20k steps to 200k, then every 100k to 2M (29 checkpoints). The argument is the
seed; it sets both the initialisation (and dropout) and the training-data
order, as in the release; `init_seed` / `data_seed` split them.
"""

from configs import bert


def get_config(arg: str = "0"):
  config = bert.get_config("base")  # L-12_H-768, vocab 30522, 512 positions
  try:
    config.seed = int(arg or 0)  # init + dropout and data order
  except ValueError as e:
    raise ValueError(f"configs/multiberts.py: the argument is the seed, an "
                     f"integer; got {arg!r}.") from e

  config.optimizer.name = "adamw_google"  # Adam without bias correction
  config.optimizer.weight_decay = 0.01  # not on biases / LayerNorm
  config.optimizer.clip_norm = 1.0  # global norm

  config.phase1.max_seq_length = 512  # every step at 512 tokens
  config.phase1.max_predictions_per_seq = 80  # 15% of 512, rounded
  config.phase1.global_batch_size = 256  # sequences per step
  config.phase1.num_steps = 2_000_000  # twice the original BERT-Base
  config.phase1.warmup_steps = 10_000  # linear warm-up, then linear decay
  config.phase1.learning_rate = 1e-4  # peak
  config.phase2.num_steps = 0  # no second phase

  config.checkpoint.save_every = 10_000  # periodic (resume) checkpoints
  config.checkpoint.keep_last = 2  # periodic ones kept
  # Kept forever: step 0, every 20k to 200k, every 100k to 2M.
  config.checkpoint.keep_forever = ((200_000, 20_000), (2_000_000, 100_000))
  return config
