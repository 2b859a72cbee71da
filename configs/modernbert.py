r"""ModernBERT (Warner et al., 2024) pretrained on this pipeline: MLM only,
masks drawn each step at 30%, sequence 1024 with a global rotary θ of 10k,
then a context-extension phase at 8192 with θ 160k.

    python -m bert_jax.main --config=configs/modernbert.py:base \
        --workdir=runs/modernbert \
        --config.phase1.train_files='data/mlm1024/train-*' \
        --config.phase1.eval_files='data/mlm1024/eval-*' \
        --config.phase2.train_files='data/mlm8192/train-*'

Argument: `tiny` (4 layers of 128, for CPU runs and tests), `base` (22
layers, hidden 768, intermediate 1152, 12 heads) or `large` (28 layers,
1024, 2624, 16 heads): the published shapes. The shards are data_prep's
`--nsp=False --masking=none` ones (`--max_predictions_per_seq` as below);
the other trainer fields are `configs/bert.py`'s. Exports are
`ModernBertForMaskedLM` (`convert export_hf`).
"""

import ml_collections

from configs import bert

# layers, hidden, intermediate (GeGLU: Wi is twice this), heads
SIZES = {"tiny": (4, 128, 256, 2), "base": (22, 768, 1152, 12),
         "large": (28, 1024, 2624, 16)}


def get_config(arg: str = "base"):
  if arg not in SIZES:
    raise ValueError(f"configs/modernbert.py:{arg}: one of {sorted(SIZES)}.")
  layers, hidden, intermediate, heads = SIZES[arg]
  config = bert.get_config("base")  # the trainer's fields; the model below
  config.model = m = ml_collections.ConfigDict()
  m.family = "modernbert"  # the encoder family (bert_jax/modernbert.py)
  m.vocab_size = 50368  # ModernBERT's BPE, padded to a multiple of 64
  m.hidden_size = hidden
  m.intermediate_size = intermediate  # GeGLU width (Wi: 2 × this)
  m.num_hidden_layers = layers
  m.num_attention_heads = heads
  m.hidden_activation = "gelu"  # exact (erf) GELU, as torch's
  m.max_position_embeddings = 8192  # the context the rotary layers reach
  m.initializer_range = 0.02  # σ; Wo and the head: σ / sqrt(2 · layers)
  m.initializer_cutoff_factor = 2.0  # truncated normals cut at ±2σ
  m.norm_eps = 1e-5
  m.norm_bias = False  # LayerNorms without bias
  m.attention_bias = False  # no biases in Wqkv / Wo ...
  m.mlp_bias = False  # ... nor in Wi / Wo
  m.classifier_bias = False  # the MLM head's dense
  m.classifier_activation = "gelu"  # the MLM head's activation
  m.decoder_bias = True  # the decoder's output bias
  m.tie_word_embeddings = True  # decoder = token embeddings
  # Global attention every third layer from layer 0, sliding-window between.
  m.layer_types = tuple("sliding_attention" if i % 3 else "full_attention"
                        for i in range(layers))
  m.global_rope_theta = 160_000.0  # the exported model's (after extension)
  m.local_rope_theta = 10_000.0  # sliding-window layers
  m.local_attention = 128  # window: keys within 64 positions of the query
  m.embedding_dropout = 0.0  # no dropout anywhere (ModernBERT's)
  m.attention_dropout = 0.0
  m.mlp_dropout = 0.0
  m.dtype = "float32"  # compute dtype (bfloat16 on TPU/GPU)
  # Special tokens' ids for config.json: ModernBERT's BPE (a run on a
  # WordPiece vocab.txt exports that vocab's [PAD]/[CLS]/[SEP] instead).
  m.pad_token_id = 50283
  m.bos_token_id = 50281
  m.eos_token_id = 50282
  m.cls_token_id = 50281
  m.sep_token_id = 50282

  config.optimizer.name = "adamw"  # decoupled AdamW (the paper: StableAdamW)
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.98
  config.optimizer.eps = 1e-6
  config.optimizer.weight_decay = 1e-5  # not on biases / norms
  config.optimizer.clip_norm = 1.0

  p1 = config.phase1
  p1.max_seq_length = 1024  # ModernBERT's pretraining length
  p1.max_predictions_per_seq = 308  # 30% of 1024 is 307
  p1.global_batch_size = 4608  # ModernBERT-base's final batch
  p1.num_steps = 400_000  # ~1.9T tokens
  p1.learning_rate = 8e-4 if arg != "large" else 5e-4  # peak (base / large)
  p1.warmup_steps = 3_000
  p1.schedule = "wsd"  # warm-up, stable ("trapezoidal"), then decay
  p1.decay_fraction = 0.1
  p1.masking = "dynamic"  # fresh masks every step
  p1.mask_rate = 0.3  # ModernBERT's 30%
  p1.global_rope_theta = 10_000.0  # global θ while at 1024

  p2 = config.phase2
  p2.max_seq_length = 8192  # context extension
  p2.max_predictions_per_seq = 2458  # 30% of 8192
  p2.global_batch_size = 72  # about as many tokens per step as phase 1
  p2.num_steps = 50_000
  p2.learning_rate = 3e-4
  p2.warmup_steps = 0  # continues from phase 1's weights
  p2.schedule = "wsd"
  p2.decay_fraction = 0.5
  p2.masking = "dynamic"
  p2.mask_rate = 0.3
  p2.global_rope_theta = 160_000.0  # the extended θ (= model.global_rope_theta)

  config.eval_every = 10_000  # held-out MLM accuracy along the run
  return config
