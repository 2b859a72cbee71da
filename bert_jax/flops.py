"""Model FLOPs of BERT pretraining (matmuls only, MLM head on gathered
positions), and the trainer's throughput meter (TFLOP/s, MFU, ETA)."""

from __future__ import annotations

import time

import jax

from bert_jax import modernbert


def forward_flops_per_sequence(cfg, seq_len: int, predictions: int) -> float:
  """2·m·n·k per matmul: Q/K/V/output projections, scores and context,
  feed-forward (ModernBERT's GeGLU: input and gate, then out), pooler, MLM
  transform and tied decoder on `predictions` positions, NSP (BERT's
  heads only where the model has them). Sliding-window layers count whole
  scores, as they are computed."""
  h, i, t, v = cfg.hidden_size, cfg.intermediate_size, seq_len, cfg.vocab_size
  if isinstance(cfg, modernbert.ModernBertConfig):
    per_layer = (2 * t * h * 4 * h + 2 * 2 * t * t * h  # Wqkv, Wo; attention
                 + 2 * t * h * 3 * i)  # Wi (input and gate) and Wo
    return (cfg.num_hidden_layers * per_layer
            + 2 * predictions * h * (h + v))  # head dense + decoder
  per_layer = (2 * t * h * 4 * h  # query, key, value, attention output
               + 2 * 2 * t * t * h  # QK^T and probs·V
               + 2 * 2 * t * h * i)  # feed-forward in and out
  heads = (2 * predictions * h * (h + v)  # MLM transform + decoder
           + (2 * h * h + 2 * h * 2 if cfg.nsp else 0))  # pooler + NSP
  return cfg.num_hidden_layers * per_layer + heads


def training_flops_per_sequence(cfg, seq_len: int, predictions: int
                                ) -> float:
  """Forward + backward ≈ 3 × forward."""
  return 3 * forward_flops_per_sequence(cfg, seq_len, predictions)


class Meter:
  """Throughput between log steps. `add` takes each step's device counts
  (no host sync); `read` returns, since the previous read: examples/s
  (`seq_per_s`, several per row when packed), row slots/s (`tokens_per_s`,
  padding included) and the real tokens' share of them, model TFLOP/s (and
  MFU against `peak_tflops`), and the phase's ETA."""

  def __init__(self, phase_cfg, model_cfg, first: int,
               peak_tflops: float = 0.0):
    self._rows, self._seq = phase_cfg.global_batch_size, phase_cfg.max_seq_length
    self._steps, self._peak = phase_cfg.num_steps, peak_tflops
    self._flops = training_flops_per_sequence(
        model_cfg, phase_cfg.max_seq_length, phase_cfg.max_predictions_per_seq)
    self._t0, self._last, self._counts = time.perf_counter(), first, []

  def add(self, metrics: dict) -> None:
    self._counts.append((metrics["sequences"], metrics["real_tokens"]))

  def read(self, local: int) -> dict:
    """After phase step `local` (0-based) has run."""
    dt = time.perf_counter() - self._t0
    steps = max(1, local + 1 - self._last)
    rows = (local + 1 - self._last) * self._rows
    seqs, real = (sum(c) for c in zip(*jax.device_get(self._counts)))
    out = {"seq_per_s": seqs / dt, "tokens_per_s": rows * self._seq / dt,
           "real_token_fraction": real / (rows * self._seq),
           "tflops_per_s": rows * self._flops / dt / 1e12,
           "eta_min": (self._steps - local - 1) * dt / steps / 60}
    if self._peak:
      out["mfu"] = out["tflops_per_s"] / self._peak
    self._counts = []
    return out

  def restart(self, local: int) -> None:
    """The next interval starts after phase step `local`."""
    self._t0, self._last = time.perf_counter(), local + 1
