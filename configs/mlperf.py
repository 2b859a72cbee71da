r"""MLPerf-style BERT phase 2: from a phase-1 checkpoint to a target held-out
MLM accuracy at sequence 512, packed, with LAMB, timed.

    python -m bert_jax.main --config=configs/mlperf.py:large \
        --workdir=runs/mlperf --config.init_from=runs/phase1 \
        --config.phase1.train_files='data/seq512/train-*' \
        --config.phase1.eval_files='data/seq512/eval-*'

MLPerf's benchmark starts BERT-Large from a fixed checkpoint and times
training until the held-out MLM accuracy reaches 0.720, evaluating a fixed
held-out set at a fixed interval. Here the run's one phase is that phase 2
(`phase1` fields: seq 512, 76 predictions, MLPerf's shards); `init_from`
names the starting checkpoint (a run, or `bert_jax.convert import_tf`).
Evaluation is on the first `eval_steps × eval_batch_size` held-out examples,
the same every time, every 150,000 training examples; the time to target
(training wall time, evaluation excluded) with its step and examples is
logged, kept in the checkpoint and written to `WORKDIR/target.json`, every
evaluation to `WORKDIR/evals.jsonl`. The batch, rate and betas
are a starting point for 8 accelerators, to be tuned to the batch.
"""

from configs import bert


def get_config(arg: str = "large"):
  config = bert.get_config(arg)
  config.optimizer.name = "lamb"  # per-layer trust ratio (NVIDIA/MLPerf)
  config.optimizer.b1 = 0.75  # short-horizon LAMB moments
  config.optimizer.b2 = 0.9
  config.optimizer.weight_decay = 0.01  # not on biases / LayerNorm
  config.phase1.max_seq_length = 512  # MLPerf's phase 2
  config.phase1.max_predictions_per_seq = 76  # MLPerf's shards
  config.phase1.packing = 3  # up to 3 examples per row (NVIDIA's packing)
  config.phase1.global_batch_size = 448  # rows per step
  config.phase1.num_steps = 8_000  # an upper bound: it stops at the target
  config.phase1.learning_rate = 4e-4  # peak
  config.phase1.warmup_steps = 0  # the checkpoint is already trained
  config.phase1.schedule = "linear"  # linear decay over num_steps
  config.phase2.num_steps = 0  # the run is MLPerf's phase 2 only
  config.target_mlm_accuracy = 0.720  # MLPerf v1+ target
  config.stop_at_target = True  # the clock stops at the target
  # MLPerf's grain, in examples: floor(0.05 * (230.23 * batch + 3e6), 25k)
  # at its reference batch of 448 (a packed row counts each example).
  config.eval_every_examples = 150_000
  config.eval_batch_size = 64
  config.eval_steps = 157  # ~10,000 held-out examples, as MLPerf
  config.eval_packing = 4  # same results as unpacked, fewer rows
  return config
