"""Fine-tuning's config (configs/finetune.py) read once into frozen `Options`
and checked: every field required, none unknown, paths made absolute."""

from __future__ import annotations

import dataclasses
from typing import Mapping

from bert_jax import xla_cpu
from data_prep import fileio

CHOICES = {"auto": None, "true": True, "false": False}


@dataclasses.dataclass(frozen=True)
class Options:
  """The fine-tuning config (configs/finetune.py, which holds the defaults
  and says what each field does), read once and checked."""
  init_checkpoint: str
  init_step: int
  task_dir: str
  task_name: str
  output_dir: str
  text_a: str
  text_b: str
  label: str
  has_header: bool
  test_has_header: str
  test_text_a: str
  test_text_b: str
  labels: str
  regression: bool
  metric: str
  max_seq_length: int
  batch_size: int
  learning_rate: float
  num_epochs: float
  warmup_proportion: float
  weight_decay: float
  clip_norm: float
  dropout: float
  pooling: str
  seed: int
  vocab_file: str
  do_lower_case: str
  dtype: str
  cpu_dots: str


def read(config: Mapping) -> Options:
  """`config` (every field of configs/finetune.py) as checked `Options`;
  paths made absolute (relative to where the job started)."""
  config = dict(config)
  names = [f.name for f in dataclasses.fields(Options)]
  missing = [n for n in names if n not in config]
  unknown = sorted(set(config) - set(names))
  if unknown:
    raise ValueError(f"Unknown config fields {unknown}; see "
                     "configs/finetune.py.")
  if missing:
    raise ValueError(f"The config lacks {missing}; start from "
                     "configs/finetune.py's get_config().")
  for field in ("init_checkpoint", "task_dir", "output_dir"):
    if not config[field]:
      raise ValueError(f"config.{field} is required.")
  for field in ("init_checkpoint", "task_dir", "output_dir", "vocab_file"):
    config[field] = fileio.resolve(config[field])
  for field in ("text_a", "text_b", "label", "test_text_a", "test_text_b",
                "test_has_header", "do_lower_case", "cpu_dots", "pooling"):
    config[field] = str(config[field])  # column numbers may come as ints
  c = Options(**config)
  xla_cpu.check(c.cpu_dots)
  for field in ("test_has_header", "do_lower_case"):
    if getattr(c, field).lower() not in CHOICES:
      raise ValueError(f"config.{field}={getattr(c, field)!r}: auto, true or "
                       "false.")
  if c.num_epochs <= 0 or not 0 <= c.warmup_proportion < 1:
    raise ValueError(f"config.num_epochs={c.num_epochs} must be > 0 and "
                     f"config.warmup_proportion={c.warmup_proportion} in "
                     "[0, 1).")
  if not (c.dropout == -1 or 0 <= c.dropout < 1):
    raise ValueError(f"config.dropout={c.dropout}: in [0, 1), or -1 for the "
                     "checkpoint's.")
  if c.pooling not in ("cls", "mean"):
    raise ValueError(f"config.pooling={c.pooling!r}: cls or mean.")
  return c
