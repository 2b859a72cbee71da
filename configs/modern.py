r"""A modern single-phase recipe (MosaicBERT / Cramming style) on the same
pipeline: MLM only, masks drawn afresh each step at 30%, no dropout, AdamW
with warm-up, a long stable rate and a short decay (WSD), sequence 128.

    python -m data_prep.create_pretraining_data --input_file='corpus/*.txt' \
        --vocab_file=vocab.txt --output_dir=data/mlm128 --nsp=False \
        --masking=none --dupe_factor=1 --max_predictions_per_seq=40 \
        --eval_fraction=0.01
    python -m bert_jax.main --config=configs/modern.py:base --workdir=runs/m \
        --config.phase1.train_files='data/mlm128/train-*' \
        --config.phase1.eval_files='data/mlm128/eval-*'

Any size `configs/bert.py` takes. The shards need no masks and no sentence
pairs (the two data_prep flags above); their `max_predictions_per_seq` must
be this recipe's (40: 30% of 128 is 38). Against `configs/bert.py` (Google's
recipe) on the same corpus: bench/RESULTS.md, "Recipes".
"""

from configs import bert


def get_config(arg: str = "base"):
  config = bert.get_config(arg)
  config.model.nsp = False  # MLM only: no pooler, no NSP head or loss
  config.model.hidden_dropout_prob = 0.0  # no dropout (Cramming, MosaicBERT)
  config.model.attention_probs_dropout_prob = 0.0
  config.model.initializer = "normal"  # transformers' plain normal(0.02)
  config.optimizer.name = "adamw"  # bias-corrected AdamW (torch's)
  config.optimizer.b2 = 0.98  # shorter second-moment memory (MosaicBERT)
  config.optimizer.weight_decay = 0.01  # not on biases / LayerNorm
  config.phase1.max_predictions_per_seq = 40  # room for 30% of 128 tokens
  config.phase1.masking = "dynamic"  # fresh masks every step
  config.phase1.mask_rate = 0.3  # MosaicBERT's 30% (Google's: 15%)
  config.phase1.whole_word_masking = False  # token-level, as MosaicBERT
  config.phase1.global_batch_size = 4096  # MosaicBERT's batch
  config.phase1.num_steps = 70_000  # ~287M examples, MosaicBERT-Base's budget
  config.phase1.learning_rate = 5e-4  # peak (MosaicBERT-Base)
  config.phase1.warmup_steps = 4_200  # 6% of the steps
  config.phase1.schedule = "wsd"  # warm-up, stable, then decay to 0
  config.phase1.decay_fraction = 0.2  # the last 20% of the steps decay
  config.phase2.num_steps = 0  # one phase
  config.eval_every = 2_000  # held-out MLM accuracy along the run
  return config
