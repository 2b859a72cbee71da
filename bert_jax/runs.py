"""The run contract: what a workdir's checkpoints record, and opening one.

A workdir holds Orbax checkpoints (`checkpointing.py`), each with its state
and a `RunMeta` as JSON. Training writes `kind="training"` records (where in
which phase the run is, its input position, its clock); an import of a
Hugging Face or Google checkpoint (`releases.import_checkpoint`) writes one
`kind="import"` record at step 0 with the vocab it copied. Everything that
reads a workdir — resuming, `init_from`, export, fine-tuning, feature
extraction, seed sweeps — goes through `RunMeta.from_json` or `open_run`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

from absl import logging
import jax

from bert_jax import checkpointing
from bert_jax import families

KINDS = ("training", "import")


class RunError(ValueError):
  """A workdir or checkpoint that cannot be used as asked."""


@dataclasses.dataclass(frozen=True)
class RunMeta:
  """One checkpoint's record (JSON beside its state)."""
  kind: str  # "training" (written by train.py) or "import" (releases.py)
  config: str  # JSON: a run's whole ConfigDict; an import's {"model": ...}
  phase: int = 0  # training: the phase (0-based) the checkpoint is in
  phase_step: int = 0  # training: steps done in that phase
  data_streams: int | None = None  # input streams the files were dealt into
  records_per_stream: int | None = None  # consumed per stream (None: packed)
  train_time_s: float = 0.0  # training wall time so far, evaluation excluded
  examples: int | None = None  # training examples seen so far (None: older)
  target: dict | None = None  # time-to-accuracy record, once reached
  imported_from: str = ""  # import: the source checkpoint
  format: str = ""  # import: its format (hf or google)
  vocab_file: str = ""  # import: the copied vocab, relative to the workdir
  do_lower_case: bool = True  # import: the tokenizer's casing
  initialised: tuple[str, ...] = ()  # import: parameters made fresh

  def __post_init__(self):
    if self.kind not in KINDS:
      raise RunError(f"checkpoint record kind={self.kind!r}: one of {KINDS}.")

  @classmethod
  def from_json(cls, d: dict) -> "RunMeta":
    """Reads a record; records written before `kind` existed are told apart
    by the fields only one of the two writers wrote."""
    d = dict(d)
    if "kind" not in d:
      if "imported_from" in d:
        d["kind"] = "import"
      elif "phase" in d:
        d["kind"] = "training"
      else:
        raise RunError(f"not a bert_jax checkpoint record (fields "
                       f"{sorted(d)}).")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise RunError(f"checkpoint record has unknown fields {unknown}; "
                     "written by a newer bert_jax?")
    if "initialised" in d:
      d["initialised"] = tuple(d["initialised"] or ())
    return cls(**d)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d["initialised"] = list(self.initialised)
    return d

  @property
  def is_import(self) -> bool:
    return self.kind == "import"

  @functools.cached_property
  def config_dict(self) -> dict:
    return json.loads(self.config)

  def model_config(self) -> "families.ModelConfig":
    return families.config_from_dict(self.config_dict["model"])

  def pretraining_seed(self) -> int | None:
    """A training run's `config.seed`; None for imports (they record only
    their model) or when not recorded."""
    seed = None if self.is_import else self.config_dict.get("seed")
    return int(seed) if isinstance(seed, int) else None

  def vocab(self, workdir: str) -> tuple[str | None, bool]:
    """(vocab file, do_lower_case): an import's copy in the workdir, or the
    one the training data's metadata.json records."""
    from etils import epath  # pylint: disable=g-import-not-at-top
    if self.vocab_file:
      return str(epath.Path(workdir) / self.vocab_file), self.do_lower_case
    for phase in ("phase1", "phase2"):
      files = (self.config_dict.get(phase) or {}).get("train_files") or ""
      for pattern in filter(None, (p.strip() for p in files.split(","))):
        data_meta = epath.Path(os.path.dirname(pattern)) / "metadata.json"
        if not data_meta.exists():
          continue
        prep = json.loads(data_meta.read_text()).get("config", {})
        recorded = prep.get("vocab_file")
        if not recorded:
          continue
        # As recorded (absolute since paths are resolved where they enter),
        # else beside the shards (older, relative records).
        for path in (epath.Path(recorded),
                     data_meta.parent / os.path.basename(recorded)):
          if path.exists():
            return str(path), bool(prep.get("do_lower_case", True))
        logging.warning("%s records vocab_file=%s, which is not there (nor "
                        "beside it); pass --vocab_file.", data_meta, recorded)
    return None, True


@dataclasses.dataclass
class Run:
  """An opened workdir at one of its checkpoints."""
  workdir: str
  step: int
  steps: list[int]
  meta: RunMeta

  @property
  def model_config(self) -> "families.ModelConfig":
    return self.meta.model_config()

  def params(self, abstract: Any = None) -> Any:
    """The checkpoint's parameters (no optimizer state): into the shardings
    of `abstract`, or by default onto one device."""
    if abstract is None:
      from bert_jax.conversion import interop  # pylint: disable=g-import-not-at-top
      device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      abstract = interop.unflatten({
          k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=device)
          for k, v in interop.template(self.model_config).items()})
    ckpt = checkpointing.Checkpointer(self.workdir, read_only=True)
    try:
      return ckpt.restore_params(self.step, abstract)
    finally:
      ckpt.close()

  def vocab(self) -> tuple[str | None, bool]:
    return self.meta.vocab(self.workdir)


def list_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints in `workdir` (none yet: [])."""
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    return list(ckpt.all_steps())
  finally:
    ckpt.close()


def open_run(workdir: str, step: int | None = None, what: str = "--workdir"
             ) -> Run:
  """The run in `workdir` at `step` (None or < 0: the latest checkpoint).
  `what` names the flag or field the workdir came from, for errors."""
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise RunError(f"{what}={workdir}: no checkpoints there.")
    step = max(steps) if step is None or step < 0 else step
    if step not in steps:
      raise RunError(f"{what}={workdir}: no checkpoint at step {step} (has "
                     f"{steps}).")
    meta = RunMeta.from_json(ckpt.restore_meta(step))
  finally:
    ckpt.close()
  return Run(workdir, step, list(steps), meta)
