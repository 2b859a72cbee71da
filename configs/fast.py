r"""Time to accuracy: a recipe that reaches a held-out MLM accuracy quickly.

    python -m bert_jax.main --config=configs/fast.py:tiny --workdir=runs/fast \
        --config.phase1.train_files=... --config.phase1.eval_files=... \
        --config.target_mlm_accuracy=0.15

Any size `configs/bert.py` takes (rates tuned on BERT-Tiny). Phase 1 only:
evaluates every 50 steps and stops at the first evaluation that reaches
`target_mlm_accuracy` (logged with its step and training time). On the
quality bench it reached the standard PyTorch loop's 1,000-step accuracy in
about a seventh of that loop's training time (bench/RESULTS.md).
"""

from configs import bert


def get_config(arg: str = "tiny"):
  config = bert.get_config(arg)
  # A short run cannot overfit: dropout only slows it (and costs time).
  config.model.hidden_dropout_prob = 0.0
  config.model.attention_probs_dropout_prob = 0.0
  config.model.initializer = "normal"  # learned faster than the truncated one
  config.optimizer.name = "lamb"  # per-layer trust ratio: takes a large rate
  config.phase1.learning_rate = 1e-2  # 2e-2 was noisier and slower to target
  config.phase1.schedule = "linear"  # warm-up, then linear decay to 0
  config.phase1.warmup_steps = 100
  config.phase1.num_steps = 1200  # the decay's horizon: the budget
  # Small packed batches: more updates per second; 3 examples per row turn
  # padding into real tokens (batch 32 packed beat 64 packed and unpacked).
  config.phase1.global_batch_size = 32
  config.phase1.packing = 3
  config.phase2.num_steps = 0  # phase 1 only
  config.eval_every = 50  # the grain of the time to accuracy
  config.stop_at_target = True  # end training at target_mlm_accuracy
  return config
