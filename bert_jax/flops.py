"""Model FLOPs of BERT pretraining (matmuls only, MLM head on gathered
positions), for TFLOP/s and MFU."""

from bert_jax import models


def forward_flops_per_sequence(cfg: models.BertConfig, seq_len: int,
                               predictions: int) -> float:
  """2·m·n·k per matmul: Q/K/V/output projections, scores and context,
  feed-forward, pooler, MLM transform and tied decoder on `predictions`
  positions, NSP."""
  h, i, t, v = cfg.hidden_size, cfg.intermediate_size, seq_len, cfg.vocab_size
  per_layer = (2 * t * h * 4 * h  # query, key, value, attention output
               + 2 * 2 * t * t * h  # QK^T and probs·V
               + 2 * 2 * t * h * i)  # feed-forward in and out
  heads = (2 * h * h  # pooler
           + 2 * predictions * h * (h + v)  # MLM transform + decoder
           + 2 * h * 2)  # NSP
  return cfg.num_hidden_layers * per_layer + heads


def training_flops_per_sequence(cfg: models.BertConfig, seq_len: int,
                                predictions: int) -> float:
  """Forward + backward ≈ 3 × forward."""
  return 3 * forward_flops_per_sequence(cfg, seq_len, predictions)
