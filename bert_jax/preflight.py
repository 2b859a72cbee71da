"""What a training run needs, checked before its first step.

`check(s, workdir)` looks at every phase's files at once — they exist, their
metadata.json fits the phase's shape and the model's vocab — and at the
workdir (writable), so that a mistake in phase 2's data is reported before
phase 1 trains, not after. Each problem is one line naming the config field
and the fix. It returns what the run will read, for the start-up log (`summary.start`).
"""

from __future__ import annotations

import dataclasses
import os
import uuid

from absl import logging

from bert_jax import dynamic_masking
from bert_jax import families
from bert_jax import input_pipeline
from bert_jax import settings
from data_prep import fileio
from data_prep import schema

DataError = input_pipeline.DataError


@dataclasses.dataclass(frozen=True)
class Files:
  """One phase's train or held-out files and what their metadata says."""
  field: str  # e.g. "phase1.train_files"
  files: tuple[str, ...]
  examples: int | None  # from metadata.json (None: no metadata)
  vocab_size: int | None  # the data's vocabulary, where recorded
  masked: bool = True  # False: written with data_prep --masking=none
  pairs: bool = True  # False: one segment per example (data_prep --nsp=False)
  vocab: dict | None = None  # metadata.json's "vocab" (kind, file, sha256)
  max_predictions: int | None = None  # the records' max_predictions_per_seq


def check(s: settings.Settings, workdir: str) -> dict[str, Files]:
  """{field: Files} for every phase's train and eval files; raises
  DataError / ConfigError / OSError naming the field and the fix."""
  writable(workdir, "--workdir")
  out = {}
  for p in s.phases:
    for kind in ("train", "eval"):
      field = f"{p.name}.{kind}_files"
      patterns = getattr(p, f"{kind}_files")
      if not patterns:
        if kind == "train":
          raise DataError(f"{field} is not set: give the phase's TFRecord "
                          f"glob (--config.{field}=...).")
        continue
      batch = p.global_batch_size if kind == "train" else s.eval_batch_size
      # Held-out records may hold another number of predictions (e.g. the
      # 15% masks every recipe is scored on); the sequence length is fixed.
      preds = (p.max_predictions_per_seq if kind == "train" else
               _recorded_predictions(field, patterns, p.max_predictions_per_seq))
      out[field] = _phase_files(field, patterns, input_pipeline.DataSpec(
          patterns, p.max_seq_length, preds, batch, s.model.vocab_size),
                                families.family(s.model) == "bert")
      if kind == "train" and not out[field].pairs and s.model.nsp:
        raise settings.ConfigError(
            f"{field}: the examples are not sentence pairs (data_prep "
            "--nsp=False), so next-sentence prediction has nothing to learn; "
            "set --config.model.nsp=False (MLM only).")
      if kind == "train" and not out[field].masked and not p.dynamic:
        raise settings.ConfigError(
            f"{field}: the shards have no masks (data_prep --masking=none); "
            f"set --config.{p.name}.masking=dynamic to draw them in training.")
  return out


def masking_vocab(s: settings.Settings, data: dict[str, Files]
                  ) -> dynamic_masking.Vocab | None:
  """The vocab dynamic masking needs (None if no phase masks dynamically and
  every held-out split has its masks): `config.vocab_file`, else the one the
  data's metadata.json names, checked against its fingerprint."""
  users = [f for p in s.phases for f in data.values()
           if f.field.startswith(p.name + ".") and
           ((p.dynamic and f.field.endswith("train_files")) or not f.masked)]
  if not users:
    return None
  recorded = next((f.vocab for f in users if f.vocab), None) or {}
  if not s.vocab_file and not recorded.get("file"):
    raise settings.ConfigError(
        f"{users[0].field}: masks are drawn in training but the shards' "
        "metadata names no vocab file (e.g. shards from Google's script): "
        "set --config.vocab_file=vocab.txt.")
  path = s.vocab_file or recorded["file"]
  vocab = dynamic_masking.load_vocab(
      path, recorded.get("kind", "auto"), recorded.get("do_lower_case", True),
      recorded.get("sha256"),
      where="config.vocab_file: " if s.vocab_file else f"{users[0].field}: ")
  logging.info("Masks drawn in training use the vocab %s.", vocab.source)
  return vocab


def writable(directory: str, flag: str) -> None:
  """Creates `directory` if needed and writes (then removes) a small file
  there; raises OSError naming `flag` where it cannot."""
  probe = os.path.join(directory, f".write-test-{uuid.uuid4().hex[:8]}")
  try:
    fileio.makedirs(directory)
    with fileio.open_file(probe, "w") as f:
      f.write("ok")
    fileio.remove(probe)
  except OSError as e:
    raise OSError(f"{flag}={directory} is not writable ({e.strerror or e}); "
                  "choose a directory you can write.") from e


def _recorded_predictions(field: str, patterns: str, default: int) -> int:
  """The files' max_predictions_per_seq by their first metadata.json
  (`default` where they have none, or match nothing: reported later)."""
  try:
    files = input_pipeline.list_files(patterns)
  except DataError:
    return default
  meta_path = next((p for p in input_pipeline.by_metadata(files) if p), None)
  if meta_path is None:
    return default
  try:
    return int(schema.read_metadata(meta_path)["max_predictions_per_seq"])
  except (schema.MetadataError, KeyError, TypeError, ValueError):
    return default  # check_metadata names the problem


def _phase_files(field: str, patterns: str, spec, exact: bool = True
                 ) -> Files:
  """`exact`: the vocab must fill the embedding table (BERT; ModernBERT's
  table may be padded beyond it)."""
  try:
    files = input_pipeline.list_files(patterns)
  except DataError as e:
    raise DataError(f"{field}: {e} (Relative paths are taken from the "
                    "directory the run starts in.)") from e
  try:
    input_pipeline.check_metadata(files, spec)
  except DataError as e:
    raise DataError(f"{field}: {e}") from e
  examples, vocab, masked, vocab_meta, pairs = 0, None, True, None, True
  for meta_path, matched in input_pipeline.by_metadata(files).items():
    if meta_path is None:
      examples = None
      continue
    meta = schema.read_metadata(meta_path)
    vocab = meta.get("vocab", {}).get("vocab_size", vocab)
    vocab_meta = meta.get("vocab", vocab_meta)
    masked = masked and schema.masked(meta)
    pairs = pairs and schema.pairs(meta)
    listed = {sh["file"]: sh.get("instances", 0)
              for sp in meta.get("splits", {}).values()
              for sh in sp.get("shards", ())}
    unlisted = sorted(os.path.basename(f) for f in matched
                      if os.path.basename(f) not in listed)
    if unlisted and listed:
      logging.warning(
          "%s matches %d file(s) that %s does not list (%s): left over from "
          "an earlier data_prep run? They are read too; remove them or "
          "narrow the glob.", field, len(unlisted), meta_path,
          ", ".join(unlisted[:3]) + (" ..." if len(unlisted) > 3 else ""))
    if examples is not None:
      examples += sum(listed.get(os.path.basename(f), 0) for f in matched)
  if examples is not None and examples < spec.global_batch_size:
    batch = ("eval_batch_size" if field.endswith("eval_files") else
             f"{field.split('.')[0]}.global_batch_size")
    raise DataError(
        f"{field}: {examples} examples (by metadata.json), fewer than one "
        f"batch ({batch}={spec.global_batch_size}); lower {batch} or make "
        "more data (data_prep --eval_fraction for held-out examples).")
  if vocab is not None and (vocab > spec.vocab_size or
                            (exact and vocab != spec.vocab_size)):
    raise settings.ConfigError(
        f"{field}: the data's vocabulary has {vocab} entries but "
        f"model.vocab_size={spec.vocab_size}; set "
        f"--config.model.vocab_size={vocab} (one embedding row per entry, "
        "as export_hf needs).")
  return Files(field, tuple(files), examples, vocab, masked, pairs,
               vocab_meta, spec.max_predictions_per_seq)
