"""The training config, read once into frozen dataclasses.

`read(config)` takes an `ml_collections.ConfigDict` built from
`configs/bert.py` (every recipe starts from it) and returns `Settings`:
typed, checked, with local paths made absolute and the seeds resolved. The
defaults live only in `configs/`; a config that lacks a field is refused by
name, as is one with a field training does not know.
"""

from __future__ import annotations

import dataclasses
import json
import typing

import ml_collections

from bert_jax import families
from bert_jax import optim
from bert_jax import xla_cpu
from data_prep import fileio


class ConfigError(ValueError):
  """A config field that is missing, unknown or out of range."""


@dataclasses.dataclass(frozen=True)
class Optimizer:
  name: str
  weight_decay: float
  b1: float
  b2: float
  eps: float
  clip_norm: float
  grad_accum_steps: int


@dataclasses.dataclass(frozen=True)
class Phase:
  """One phase (`phase1`, `phase2`); `index` 0-based, `start` its first
  global step."""
  index: int
  start: int
  train_files: str
  eval_files: str
  max_seq_length: int
  max_predictions_per_seq: int
  global_batch_size: int
  num_steps: int
  warmup_steps: int
  learning_rate: float
  schedule: str
  decay_fraction: float
  packing: int
  masking: str  # static | dynamic
  mask_rate: float
  mask_token_prob: float
  random_token_prob: float
  whole_word_masking: bool
  carry_optimizer_state: bool
  global_rope_theta: float  # ModernBERT: this phase's (0: the model's)

  @property
  def dynamic(self) -> bool:
    return self.masking == "dynamic"

  @property
  def end(self) -> int:
    return self.start + self.num_steps

  @property
  def name(self) -> str:
    return f"phase{self.index + 1}"

  def learning_rate_schedule(self):
    """The learning rate by the phase's own step (`phaseN.schedule`)."""
    return optim.schedule(self.schedule, self.learning_rate,
                          self.warmup_steps, self.num_steps,
                          self.decay_fraction)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  save_every: int
  keep_last: int
  keep_forever: tuple
  async_save: bool


@dataclasses.dataclass(frozen=True)
class Mesh:
  data: int
  fsdp: int
  tensor: int
  dcn_data: int


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything `train_and_evaluate` reads from its config."""
  seed: int
  init_seed: int  # resolved: parameter init and dropout
  data_seed: int  # resolved: training-data order
  dropout_prng: str
  init_from: str
  init_from_step: int
  vocab_file: str
  model: families.ModelConfig  # BertConfig or ModernBertConfig
  optimizer: Optimizer
  phases: tuple[Phase, ...]  # those with num_steps > 0, in order
  checkpoint: Checkpoint
  log_every: int
  eval_batch_size: int
  eval_steps: int
  eval_packing: int
  eval_every: int
  eval_every_examples: int
  eval_mask_rate: float
  target_mlm_accuracy: float
  stop_at_target: bool
  shuffle_buffer: int
  pack_open_rows: int
  data_streams: int
  peak_tflops: float
  on_nonfinite: str
  cpu_dots: str
  mesh: Mesh
  config_json: str  # the resolved config, as checkpoints record it

  @property
  def has_eval(self) -> bool:
    return any(p.eval_files for p in self.phases)


_SECTIONS = {"optimizer": Optimizer, "checkpoint": Checkpoint, "mesh": Mesh}
_PHASES = ("phase1", "phase2")
_DERIVED = {"phases", "config_json"}


def resolve_paths(config: ml_collections.ConfigDict
                  ) -> ml_collections.ConfigDict:
  """A copy of `config` with its local paths absolute (`~` expanded), so the
  config saved in checkpoints works from any directory."""
  config = config.copy_and_resolve_references()
  for name in _PHASES:
    for field in ("train_files", "eval_files"):
      if config.get(name) is not None and config[name].get(field):
        config[name][field] = fileio.resolve_list(config[name][field])
  for field in ("init_from", "vocab_file"):
    if config.get(field):
      config[field] = fileio.resolve(config[field])
  return config


def _fields(cls, skip=()) -> list[str]:
  return [f.name for f in dataclasses.fields(cls) if f.name not in skip]


def _section(cls, section, where: str, skip=(), **extra):
  """`cls` from a ConfigDict section; every field required, none unknown."""
  names = _fields(cls, skip)
  have = set(section.keys())
  missing = [n for n in names if n not in have and n not in extra]
  unknown = sorted(have - set(names) - set(skip))
  if missing or unknown:
    parts = []
    if missing:
      parts.append("lacks " + ", ".join(f"{where}{n}" for n in missing))
    if unknown:
      parts.append("has unknown " + ", ".join(f"{where}{n}" for n in unknown))
    raise ConfigError(
        f"The config {' and '.join(parts)}; start from configs/bert.py's "
        "get_config() (every recipe in configs/ does).")
  hints = typing.get_type_hints(cls)
  values = dict(extra)
  for n in names:
    if n in extra:
      continue
    v = section[n]
    if hints[n] is float and isinstance(v, int) and not isinstance(v, bool):
      v = float(v)
    values[n] = v
  return cls(**values)


def read(config: ml_collections.ConfigDict) -> Settings:
  """`config` as typed, checked `Settings` (paths absolute, seeds resolved)."""
  config = resolve_paths(config)
  top = [n for n in config.keys() if n not in _PHASES]
  sections = {}
  for name, cls in _SECTIONS.items():
    if name not in config:
      raise ConfigError(f"The config lacks config.{name}; start from "
                        "configs/bert.py's get_config().")
    sections[name] = _section(cls, config[name], f"config.{name}.")
  if "model" not in config:
    raise ConfigError("The config lacks config.model; start from "
                      "configs/bert.py's get_config().")
  family = config.model.get("family", "bert")
  if family not in families.CONFIGS:
    raise ConfigError(f"config.model.family={family!r}: one of "
                      f"{sorted(families.CONFIGS)}.")
  try:
    sections["model"] = _section(families.CONFIGS[family], config.model,
                                 "config.model.", skip=("family",))
  except ValueError as e:  # the config class's own checks
    if isinstance(e, ConfigError):
      raise
    raise ConfigError(str(e)) from e
  phases, start = [], 0
  for i, name in enumerate(_PHASES):
    if config.get(name) is None:
      continue
    p = _section(Phase, config[name], f"config.{name}.",
                 skip=("index", "start"), index=i, start=start)
    if p.num_steps > 0:
      phases.append(p)
      start += p.num_steps
  if not phases:
    raise ConfigError("No phase has num_steps > 0 (set phase1.num_steps).")
  flat = ml_collections.ConfigDict({n: config[n] for n in top
                                    if n not in sections})
  s = _section(Settings, flat, "config.", skip=tuple(_DERIVED | set(sections)),
               **sections, phases=tuple(phases), config_json=config.to_json())
  # -1: the shared seed.
  s = dataclasses.replace(
      s, init_seed=s.seed if s.init_seed < 0 else s.init_seed,
      data_seed=s.seed if s.data_seed < 0 else s.data_seed)
  _check(s)
  return s


def _check(s: Settings) -> None:
  """Ranges and combinations the mesh does not decide."""
  if s.on_nonfinite not in ("stop", "skip"):
    raise ConfigError(f"config.on_nonfinite={s.on_nonfinite!r}: stop or "
                      "skip.")
  if s.dropout_prng not in ("threefry2x32", "rbg", "unsafe_rbg"):
    raise ConfigError(f"config.dropout_prng={s.dropout_prng!r}: expected "
                      "threefry2x32, rbg or unsafe_rbg.")
  xla_cpu.check(s.cpu_dots)
  if not 0.0 <= s.target_mlm_accuracy < 1.0:
    raise ConfigError(f"target_mlm_accuracy={s.target_mlm_accuracy}: a "
                      "held-out MLM accuracy below 1, or 0 (off).")
  if s.eval_every < 0 or s.eval_every_examples < 0 or (
      s.eval_every and s.eval_every_examples):
    raise ConfigError(f"eval_every={s.eval_every}, eval_every_examples="
                      f"{s.eval_every_examples}: set one of them (0: off).")
  if not 0.0 < s.eval_mask_rate < 1.0:
    raise ConfigError(f"eval_mask_rate={s.eval_mask_rate}: the share of "
                      "tokens masked in held-out shards without masks, in "
                      "(0, 1); 0.15 is Google's.")
  if s.target_mlm_accuracy and not s.has_eval:
    raise ConfigError("target_mlm_accuracy is set but no phase has held-out "
                      "data: set phase1.eval_files (and eval_every).")
  for p in s.phases:
    try:
      p.learning_rate_schedule()
    except ValueError as e:  # e.g. "schedule='cosine': expected one of ..."
      raise ConfigError(f"{p.name}.{e}") from e
    for name, k in ((f"{p.name}.packing", p.packing),
                    ("eval_packing", s.eval_packing)):
      if not 0 <= k <= p.max_seq_length // 2:
        raise ConfigError(f"{name}={k}: 0 (off) or the most examples per row "
                          "(an example has at least 2 tokens).")
    _check_masking(p)
    if p.global_rope_theta < 0 or (p.global_rope_theta and
                                   families.family(s.model) != "modernbert"):
      raise ConfigError(f"{p.name}.global_rope_theta={p.global_rope_theta}: "
                        "a ModernBERT's rotary θ for the phase (0: the "
                        "model's); BERT has no rotary embeddings.")
    if p.max_seq_length > s.model.max_position_embeddings:
      raise ConfigError(
          f"{p.name}.max_seq_length={p.max_seq_length} exceeds "
          f"model.max_position_embeddings={s.model.max_position_embeddings}.")


def _check_masking(p: Phase) -> None:
  if p.masking not in ("static", "dynamic"):
    raise ConfigError(f"{p.name}.masking={p.masking!r}: static (the shards' "
                      "masks) or dynamic (drawn at each step).")
  if not p.dynamic:
    return
  if p.packing:
    raise ConfigError(f"{p.name}.masking=dynamic with {p.name}.packing="
                      f"{p.packing}: not supported together yet; set "
                      f"--config.{p.name}.packing=0.")
  if not 0 < p.mask_rate <= 1:
    raise ConfigError(f"{p.name}.mask_rate={p.mask_rate}: in (0, 1].")
  shares = (p.mask_token_prob, p.random_token_prob)
  if min(shares) < 0 or sum(shares) > 1:
    raise ConfigError(
        f"{p.name}.mask_token_prob={p.mask_token_prob} and "
        f"random_token_prob={p.random_token_prob}: shares of the predicted "
        "tokens, each >= 0, summing to at most 1.")


def check_mesh(s: Settings, mesh) -> None:
  """Batch sizes against the mesh's data-parallel size."""
  dp = mesh.shape["data"] * mesh.shape["fsdp"]
  accum = s.optimizer.grad_accum_steps
  for p in s.phases:
    if p.global_batch_size % (dp * accum):
      raise ConfigError(
          f"{p.name}.global_batch_size={p.global_batch_size} must be "
          f"divisible by the data-parallel size {dp} × "
          f"optimizer.grad_accum_steps={accum}.")
    if p.eval_files and s.eval_batch_size % dp:
      raise ConfigError(
          f"eval_batch_size={s.eval_batch_size} must be divisible by the "
          f"data-parallel size {dp} ({p.name}.eval_files is set).")


# Fields a resumed run may not change: the checkpoint would not restore, or
# the run would no longer be the one it continues (its seeds, its data
# position, counted in records of a fixed shape and batch).
FIXED_ON_RESUME = (
    "seed", "init_seed", "data_seed", "dropout_prng",
    *(f"model.{f}" for f in ("vocab_size", "hidden_size", "num_hidden_layers",
                             "num_attention_heads", "intermediate_size",
                             "max_position_embeddings", "type_vocab_size",
                             "hidden_act", "nsp", "family", "layer_types",
                             "hidden_activation", "norm_bias",
                             "attention_bias", "mlp_bias", "classifier_bias",
                             "decoder_bias", "tie_word_embeddings")),
    "optimizer.name", "optimizer.grad_accum_steps",
    *(f"{p}.{f}" for p in _PHASES
      for f in ("max_seq_length", "max_predictions_per_seq",
                "global_batch_size", "packing")),
)


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = tuple(map(tuple, v)) if (
          isinstance(v, list) and v and isinstance(v[0], list)) else (
              tuple(v) if isinstance(v, list) else v)
  return out


def resume_changes(saved: dict, s: Settings, phase: int, phase_step: int
                   ) -> dict[str, tuple]:
  """{field: (saved, new)} of what differs from the config a checkpoint was
  written with (inside phase index `phase`, `phase_step` steps into it).
  Raises ConfigError naming every field that may not change: those in
  FIXED_ON_RESUME, the step counts of phases already finished (the global
  steps would move), or the current phase shortened below its checkpoint."""
  old, new = _flat(saved), _flat(json.loads(s.config_json))
  changed = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k)}
  refused = [k for k in changed if k in FIXED_ON_RESUME]
  current = _PHASES[phase]
  for name in _PHASES[:phase]:
    if f"{name}.num_steps" in changed:
      refused.append(f"{name}.num_steps")
  steps = new.get(f"{current}.num_steps")
  if steps is not None and steps < phase_step:
    refused.append(f"{current}.num_steps")
  if refused:
    raise ConfigError(
        "The workdir's checkpoint was written with another config; these "
        "fields may not change on resume: " + "; ".join(
            f"{k} was {changed[k][0]!r}, now {changed[k][1]!r}"
            + (f" (the run is {phase_step} steps into {current})"
               if k == f"{current}.num_steps" else
               " (that phase is finished)" if k.endswith(".num_steps") else "")
            for k in dict.fromkeys(refused)) +
        ". Restore them, or train in a new --workdir.")
  return changed
