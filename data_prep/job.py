"""The local data-preparation job: the plan, the worker pool, the shards.

The per-unit and per-shard chores (writing a unit, which units make a
shard, concatenation, totals, metadata) are `units.py`'s, shared with the
Beam pipeline.

`generate(cfg, files, workers)` is what `create_pretraining_data` runs after
parsing flags; it defines no flags itself, so it can be imported anywhere.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time

from absl import logging

from data_prep import corpus
from data_prep import fileio
from data_prep import pipeline
from data_prep import reference
from data_prep import schema
from data_prep import units
from data_prep import writer


class FlagError(ValueError):
  pass


def check_flags(cfg: pipeline.PrepConfig) -> None:
  """Rejects impossible settings with a message naming the flag."""
  if cfg.max_seq_length < 5:
    raise FlagError(f"--max_seq_length={cfg.max_seq_length}: needs >= 5 "
                    "([CLS] A [SEP] B [SEP] with one token in A and in B).")
  most = cfg.max_seq_length - 3
  if not 1 <= cfg.max_predictions_per_seq <= most:
    raise FlagError(
        f"--max_predictions_per_seq={cfg.max_predictions_per_seq}: must be "
        f"in [1, {most}] (at most max_seq_length - 3 tokens can be masked).")
  if not 0.0 < cfg.masked_lm_prob <= 1.0:
    raise FlagError(f"--masked_lm_prob={cfg.masked_lm_prob}: must be in (0, 1].")
  if cfg.masking not in ("static", "none"):
    raise FlagError(f"--masking={cfg.masking}: static or none.")
  if not 0.0 <= cfg.short_seq_prob <= 1.0:
    raise FlagError(f"--short_seq_prob={cfg.short_seq_prob}: must be in [0, 1].")
  if cfg.dupe_factor < 1:
    raise FlagError(f"--dupe_factor={cfg.dupe_factor}: must be >= 1.")
  if not 0.0 <= cfg.eval_fraction < 1.0:
    raise FlagError(f"--eval_fraction={cfg.eval_fraction}: must be in [0, 1).")
  if cfg.pool_tokens < 1:
    raise FlagError(f"--pool_tokens={cfg.pool_tokens}: must be >= 1.")
  cap = round(cfg.max_seq_length * cfg.masked_lm_prob)
  if cfg.max_predictions_per_seq < cap:
    logging.warning(
        "--max_predictions_per_seq=%d caps the %d predictions a full sequence "
        "would get (max_seq_length * masked_lm_prob).",
        cfg.max_predictions_per_seq, cap)


@dataclasses.dataclass
class Plan:
  units: list[corpus.Unit]
  train_outputs: list[str]
  eval_outputs: list[str]
  metadata_path: str
  parts_dir: str


@dataclasses.dataclass(frozen=True)
class Outputs:
  """Where shards go: Google's list of files, or a directory of shards."""
  output_dir: str | None = None
  output_file: tuple[str, ...] = ()
  eval_output_file: tuple[str, ...] = ()
  num_shards: int = 1
  num_eval_shards: int = 1
  unit_mb: float = 32.0  # input text per work unit
  overwrite: bool = False  # remove shards of an earlier run not rewritten

  def paths(self, eval_fraction: float):
    """(train shard paths, eval shard paths, metadata path)."""
    if self.output_file and self.output_dir:
      raise FlagError("Give --output_file or --output_dir, not both.")
    if self.output_file:
      if eval_fraction > 0 and not self.eval_output_file:
        raise FlagError("--eval_fraction > 0 with --output_file needs "
                        "--eval_output_file (or use --output_dir).")
      return (list(self.output_file), list(self.eval_output_file),
              schema.sidecar_path(self.output_file[0]))
    out = self.output_dir or "bert_jax_data"
    if self.num_shards < 1 or self.num_eval_shards < 1:
      raise FlagError("--num_shards and --num_eval_shards must be >= 1.")
    s, e = self.num_shards, self.num_eval_shards
    train = [fileio.join(out, f"train-{i:05d}-of-{s:05d}.tfrecord")
             for i in range(s)]
    evals = ([fileio.join(out, f"eval-{i:05d}-of-{e:05d}.tfrecord")
              for i in range(e)] if eval_fraction > 0 else [])
    return train, evals, fileio.join(out, schema.METADATA_NAME)


def _stale_shards(out: str, planned: list[str], overwrite: bool) -> None:
  """Shards in `out` that this job will not write (an earlier run's, with
  another shard count): refused, or with `overwrite` removed, since the
  trainer's `train-*` glob would read them too."""
  found = [f for kind in ("train", "eval")
           for f in fileio.glob(fileio.join(out, f"{kind}-*-of-*.tfrecord"))]
  stale = sorted(set(found) - set(planned))
  if not stale:
    return
  if not overwrite:
    names = ", ".join(os.path.basename(f) for f in stale[:3])
    raise FlagError(
        f"--output_dir={out} holds {len(stale)} shard(s) of an earlier run "
        f"that this job would not replace ({names}{' ...' if len(stale) > 3 else ''}); "
        "a train-* glob would read them too. Pass --overwrite to remove them, "
        "or choose another --output_dir.")
  for f in stale:
    logging.info("--overwrite: removing %s", f)
    fileio.remove(f)


def make_plan(cfg: pipeline.PrepConfig, files: list[str],
              outputs: Outputs) -> Plan:
  """Work units (fixed by the input and flags, not by the worker count)."""
  train, evals, meta = outputs.paths(cfg.eval_fraction)
  if not outputs.output_file:
    _stale_shards(os.path.dirname(train[0]) or ".", train + evals,
                  outputs.overwrite)
  if cfg.tfds_name:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    splits = tfds.even_splits(cfg.tfds_split, n=len(train))
    work = [corpus.Unit(tfds_split=s) for s in splits]
    key_src = [cfg.tfds_name, cfg.tfds_split]
  else:
    total = sum(fileio.size(f) for f in files)
    n_units = max(len(train), math.ceil(total / (outputs.unit_mb * 2**20)))
    work = corpus.plan_units(files, n_units)
    key_src = [(f, fileio.size(f), None if fileio.is_remote(f)
                else os.path.getmtime(f)) for f in files]
  key = hashlib.sha256(json.dumps(
      [dataclasses.asdict(cfg), key_src, len(work), train, evals,
       units.tokenizer(cfg).fingerprint],
      default=str).encode()).hexdigest()[:16]
  parts = fileio.join(os.path.dirname(train[0]) or ".", f".parts-{key}")
  return Plan(work, train, evals, meta, parts)


def _init_worker(cfg: pipeline.PrepConfig):
  os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
  units.tokenizer(cfg)
  pipeline.warm_up(cfg)


def run_unit(index: int, unit: corpus.Unit, cfg: pipeline.PrepConfig,
             parts_dir: str) -> dict:
  """One unit's parts and statistics (`units.write_unit`), unless an earlier
  run finished it."""
  done = units.finished(parts_dir, index)
  if done is not None:
    return done
  return units.write_unit(index, unit, cfg, units.tokenizer(cfg), parts_dir,
                          str(os.getpid()))


def _run_units(plan: Plan, cfg: pipeline.PrepConfig, workers: int) -> list:
  fileio.makedirs(plan.parts_dir)
  n = len(plan.units)
  if workers <= 1 or n == 1:
    return [run_unit(i, u, cfg, plan.parts_dir) for i, u in enumerate(plan.units)]
  if workers > n:
    logging.warning("--num_workers=%d but only %d work units; lower --unit_mb "
                    "or raise --num_shards to use every worker.", workers, n)
  # Forked workers inherit the loaded tokenizer and compiled kernels; spawn
  # when TensorFlow is loaded (its threads make fork unsafe) or off Linux.
  fork_ok = sys.platform == "linux" and "tensorflow" not in sys.modules
  ctx = multiprocessing.get_context("fork" if fork_ok else "spawn")
  with concurrent.futures.ProcessPoolExecutor(
      min(workers, n), mp_context=ctx, initializer=_init_worker,
      initargs=(cfg,)) as ex:
    futures = [ex.submit(run_unit, i, u, cfg, plan.parts_dir)
               for i, u in enumerate(plan.units)]
    results = []
    for fut in concurrent.futures.as_completed(futures):
      r = fut.result()
      results.append(r)
      logging.info("unit %d/%d done: %d train + %d eval instances", r["unit"] + 1,
                   n, r["instances"]["train"], r["instances"]["eval"])
  return sorted(results, key=lambda r: r["unit"])


def _assemble(plan: Plan, split: str, outputs: list[str]) -> list[dict]:
  """Concatenates unit parts into shards (`units.shard_units`)."""
  shards = []
  for path, unit_ids in zip(outputs, units.shard_units(len(plan.units),
                                                       len(outputs))):
    parts = [units.part_path(plan.parts_dir, u, split) for u in unit_ids]
    fileio.makedirs(os.path.dirname(path) or ".")
    if len(parts) == 1:
      fileio.rename(parts[0], path)
    else:
      units.concatenate(parts, path, "assemble")
    shards.append({"file": os.path.basename(path), "units": list(unit_ids)})
  return shards


def resolve_paths(cfg: pipeline.PrepConfig, files: list[str], outputs: Outputs
                  ) -> tuple[pipeline.PrepConfig, list[str], Outputs]:
  """The job's local paths made absolute (`fileio.resolve`), so that what
  metadata.json records (vocab, inputs, shards) works from any directory."""
  cfg = dataclasses.replace(cfg, vocab_file=fileio.resolve(cfg.vocab_file),
                            tfds_data_dir=fileio.resolve(cfg.tfds_data_dir))
  outputs = dataclasses.replace(
      outputs, output_dir=fileio.resolve(outputs.output_dir),
      output_file=tuple(map(fileio.resolve, outputs.output_file)),
      eval_output_file=tuple(map(fileio.resolve, outputs.eval_output_file)))
  return cfg, [fileio.resolve(f) for f in files], outputs


def generate(cfg: pipeline.PrepConfig, files: list[str], outputs: Outputs,
             workers: int = 1, engine: str = "fast") -> dict:
  """Runs the whole job; returns the metadata it wrote."""
  cfg, files, outputs = resolve_paths(cfg, files, outputs)
  check_flags(cfg)
  start = time.perf_counter()
  tok = units.tokenizer(cfg)
  pipeline.warm_up(cfg)
  timing = {"start_up": time.perf_counter() - start}
  plan = make_plan(cfg, files, outputs)
  t = time.perf_counter()
  if engine == "reference":
    results, splits = _reference(cfg, files, tok, plan)
    totals = units.totals(results)
    timing["instances"] = time.perf_counter() - t
  else:
    results = _run_units(plan, cfg, workers)
    totals = units.totals(results)
    units.report(totals, files)  # before any shard appears
    timing["units"] = time.perf_counter() - t
    t = time.perf_counter()
    splits = {"train": _assemble(plan, "train", plan.train_outputs)}
    if plan.eval_outputs:
      splits["eval"] = _assemble(plan, "eval", plan.eval_outputs)
    timing["assemble"] = time.perf_counter() - t
    fileio.rmtree(plan.parts_dir)
  for split, shards in splits.items():
    for shard in shards:
      shard["instances"] = sum(results[u]["instances"][split]
                               for u in shard.pop("units"))
  metadata = units.metadata(
      cfg, tok, files, engine, splits=units.splits_summary(splits),
      stats=totals, seconds=round(time.perf_counter() - start, 3),
      timing={k: round(v, 3) for k, v in timing.items()}, workers=workers,
      created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
  schema.write_metadata(plan.metadata_path, metadata)
  return metadata


def _reference(cfg, files, tok, plan):
  if (cfg.eval_fraction > 0 or cfg.chinese_wwm or cfg.tfds_name or
      cfg.masking != "static" or not cfg.nsp):
    raise FlagError("--engine=reference reproduces Google's script: it takes "
                    "text files only, without --eval_fraction/--chinese_wwm/"
                    "--masking=none/--nsp=False.")
  stats = pipeline.UnitStats()
  records = reference.reference_examples(files, cfg, tok,
                                         pipeline.masking_spec(cfg, tok), stats)
  n = len(plan.train_outputs)
  units.report(units.totals([{"unit": 0, **stats.as_dict()}]), files)
  shards = []
  for k, path in enumerate(plan.train_outputs):
    fileio.makedirs(os.path.dirname(path) or ".")
    with writer.AtomicWriter(path) as w:
      w.write_records(records[k::n])
    shards.append({"file": os.path.basename(path), "units": [k]})
  per_file = [{"unit": k, "instances": {"train": len(records[k::n]), "eval": 0},
               **{f: v for f, v in stats.as_dict().items() if f != "instances"}}
              for k in range(n)]
  return per_file, {"train": shards}
