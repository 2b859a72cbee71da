"""XLA:CPU compiler options for the train and eval steps (`config.cpu_dots`).

XLA:CPU sends dots and reductions to YNNPACK by default. On the 2-core AMD
EPYC VM measured (`bench/step_variants.py --variants=ynn,onednn_dots`),
oneDNN's dots made the BERT-Base step 1.15× faster and Mini/Small 1.07×, and
BERT-Tiny (hidden size 128) 0.97×: so `auto` uses oneDNN dots from hidden size
256 up; reductions stay with YNNPACK either way. Same products in another
library: equal losses in those runs, or within float32 rounding. Only CPU
steps are affected; GPU and TPU compile as usual.
"""

from __future__ import annotations

CHOICES = ("auto", "ynn", "onednn")
ONEDNN_FROM_HIDDEN = 256  # `auto`: oneDNN dots from this hidden size up

# oneDNN for dots, YNNPACK for reductions only (no YNN dot fusions).
ONEDNN_DOTS = {
    "xla_cpu_use_onednn": True,
    "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE",
}


def check(choice: str) -> None:
  if choice not in CHOICES:
    raise ValueError(f"config.cpu_dots={choice!r}: expected one of "
                     f"{', '.join(CHOICES)}.")


def compiler_options(choice: str, hidden_size: int,
                     platform: str) -> dict | None:
  """`jax.jit(..., compiler_options=...)` for a step of a model with this
  hidden size on `platform` (a jax device platform): None leaves XLA's
  defaults."""
  check(choice)
  onednn = choice == "onednn" or (choice == "auto" and
                                  hidden_size >= ONEDNN_FROM_HIDDEN)
  return dict(ONEDNN_DOTS) if platform == "cpu" and onednn else None
