r"""Data preparation on Apache Beam: the same work units, on many machines.

    python -m data_prep.beam_pipeline \
        --input_file='gs://b/wiki/*.txt' --vocab_file=gs://b/vocab.txt \
        --output_dir=gs://b/data/seq128 --num_shards=256 --dupe_factor=5 \
        --eval_fraction=0.01 \
        --runner=DataflowRunner --project=P --region=R \
        --temp_location=gs://b/tmp --setup_file=./setup.py

Flags are those of `create_pretraining_data` (same definitions, same config
building); every other argument goes to Beam's `PipelineOptions` (`--runner`,
`--project`, `--region`, `--temp_location`, `--experiments`, …). An explicitly
given `--num_workers` is handed to Beam as its worker count. Without
`--runner`, Beam's DirectRunner runs the job on this machine.

The pipeline:

1. The launcher checks the flags and cuts the input into the same work units
   as the local path (`job.make_plan`: byte ranges at document boundaries, or
   TFDS slices; fixed by the input and flags, not by the worker count).
2. `Create(unit indexes) | Reshuffle | ParDo(_RunUnit)`: each unit runs
   `pipeline.unit_records` unchanged (a pure function of its slice and
   `(random_seed, unit index)`) with a tokenizer loaded once per DoFn instance
   in `setup` (one per worker thread: the tokenizer's caches are not
   thread-safe), and streams its records, in order, to a train part and an
   eval part under the hidden parts directory `<output>/.parts-<key>/`, under
   a temporary name renamed when complete, then writes the unit's statistics.
   The part names and contents are those of the local path, so a Beam run and
   a local run with the same flags reuse each other's finished units, and a
   retried or duplicated bundle rewrites identical bytes.
3. All unit statistics are combined and checked (`units.report`: an empty
   corpus fails here, before any shard exists; warnings are logged).
4. Shards: the (split, shard k) → units assignment is the local one (unit u
   goes to shard `u * num_shards // n_units`), so the plan itself is the key
   that groups records per shard; `Create(shard specs) | Reshuffle |
   ParDo(_AssembleShard)` concatenates each shard's unit parts in unit order
   (TFRecord files concatenate) into `.parts-<key>/<shard name>`, streaming
   8 MB at a time. The records therefore never pass through a shuffle: no
   worker ever holds a shard, let alone a split, in memory.
5. Finalize (one element): renames every shard to its final name, then writes
   `metadata.json` (same content as the local path's, plus `runner`; `workers`
   is Beam's worker count; `created`, `seconds`, `timing` and the per-unit
   `unit_seconds` are times), then deletes the parts directory.

The shards are byte-for-byte those of `create_pretraining_data` with the same
flags. A pipeline killed or failed before its final step leaves no
final-named shard and no `metadata.json` (only the hidden parts directory,
reused by a rerun); one killed during the final renames leaves shards but no
`metadata.json`, as the local path does. Remote outputs (`gs://…`) go through `tf.io.gfile`.

Memory is bounded as in the local path, not by the corpus or a shard: each
worker thread holds its own tokenizer and one document pool (`--pool_tokens`
tokens and their instances as spans) plus one encoded batch of 2,048 records;
reading, writing and shard assembly stream in 8 MB blocks. Measured: about
180 MB per worker process (tokenizer, compiled kernels) plus about 40 bytes
per pool token per thread (160 MB at the default 4M). Disk: nothing is
written to worker disks; parts and shards go to the output file system.

NSP negatives: as in the local path, "random next" segments come from any
document of the same pool, i.e. up to `--pool_tokens` tokens of consecutive
documents of one work unit; a unit is a byte range of the concatenated input
files, so a pool (and its negatives) can span input-file boundaries and is
not confined to one input file. There is no global document shuffle across units
or shards: it would change the records, and the two paths must agree byte for
byte. Instances are shuffled within a pool; the trainer shuffles across shards
when reading.

Progress: Beam counters in namespace `bert_jax.data_prep` (`instances_train`,
`instances_eval`, `units_done`, `units_reused`, `shards_assembled`,
`shards_written`, `bytes_assembled`) and a log line per unit and per shard.
"""

import dataclasses
import difflib
import json
import os
import time
import uuid


from data_prep import cli
from absl import flags
from absl import logging
import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.options import pipeline_options as beam_options

from data_prep import corpus
from data_prep import fileio
from data_prep import job
from data_prep import pipeline
from data_prep import schema
from data_prep import tokenization
from data_prep import units

NAMESPACE = "bert_jax.data_prep"
_LOCAL_RUNNERS = ("directrunner", "switchingdirectrunner", "fnapirunner",
                  "bundlebaseddirectrunner", "prismrunner")


@dataclasses.dataclass(frozen=True)
class ShardSpec:
  split: str
  index: int
  path: str  # final path
  units: tuple[int, ...]  # in order


def shard_specs(plan: job.Plan) -> list[ShardSpec]:
  """Which units make up each shard (`units.shard_units`, as locally)."""
  specs = []
  for split, outs in (("train", plan.train_outputs),
                      ("eval", plan.eval_outputs)):
    for k, (path, unit_ids) in enumerate(zip(
        outs, units.shard_units(len(plan.units), len(outs)))):
      specs.append(ShardSpec(split, k, path, unit_ids))
  return specs


class _RunUnit(beam.DoFn):
  """Unit index → its train/eval parts under the parts directory, and its
  statistics: `units.write_unit`, as the local path's `job.run_unit`."""

  def __init__(self, cfg: pipeline.PrepConfig, units: list[corpus.Unit],
               parts_dir: str):
    self._cfg, self._units, self._parts_dir = cfg, units, parts_dir
    self._tok = self._chinese = None
    self._instances = {s: Metrics.counter(NAMESPACE, f"instances_{s}")
                       for s in ("train", "eval")}
    self._done = Metrics.counter(NAMESPACE, "units_done")
    self._reused = Metrics.counter(NAMESPACE, "units_reused")

  def setup(self):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = self._cfg
    self._tok = tokenization.load_tokenizer(cfg.vocab_file, cfg.do_lower_case,
                                            cfg.tokenizer)
    if cfg.chinese_wwm:
      self._chinese = tokenization.ChineseWordFlags()
    pipeline.warm_up(cfg)  # compiles or loads the kernels once per worker

  def process(self, index: int):
    result = units.finished(self._parts_dir, index)
    if result is not None:  # finished by an earlier (Beam or local) run
      for split, n in result["instances"].items():
        self._instances[split].inc(n)
      self._reused.inc()
      yield result
      return
    # A fresh tag per attempt: a retried or duplicated bundle never collides.
    result = units.write_unit(
        index, self._units[index], self._cfg, self._tok, self._parts_dir,
        uuid.uuid4().hex, self._chinese,
        on_records=lambda split, n: self._instances[split].inc(n))
    self._done.inc()
    logging.info("unit %d/%d done: %d train + %d eval instances", index + 1,
                 len(self._units), result["instances"]["train"],
                 result["instances"]["eval"])
    yield result


def _check_units(results: list[dict], files: list[str]) -> list[dict]:
  """All units' statistics, by unit; raises on an empty corpus (before any
  shard is assembled) and logs the local path's warnings."""
  results = sorted(results, key=lambda r: r["unit"])
  units.report(units.totals(results), files)
  return results


class _AssembleShard(beam.DoFn):
  """ShardSpec → the shard's bytes under a temporary name (in the parts
  directory); yields where they are and the instance count."""

  def __init__(self, parts_dir: str):
    self._parts_dir = parts_dir
    self._assembled = Metrics.counter(NAMESPACE, "shards_assembled")
    self._bytes = Metrics.counter(NAMESPACE, "bytes_assembled")

  def process(self, spec: ShardSpec, results: list[dict]):
    parts = [units.part_path(self._parts_dir, u, spec.split)
             for u in spec.units]
    name = os.path.basename(spec.path)
    if len(parts) == 1:
      source = parts[0]  # renamed into place as it is, as the local path does
    else:
      source = fileio.join(self._parts_dir, f"shard.{spec.split}."
                           f"{spec.index:05d}.{name}")
      if not fileio.exists(source):  # else: a retry after it was written
        self._bytes.inc(units.concatenate(parts, source, uuid.uuid4().hex))
    instances = sum(results[u]["instances"][spec.split] for u in spec.units)
    self._assembled.inc()
    logging.info("assembled %s shard %d (%s): %d instances from %d unit(s)",
                 spec.split, spec.index, name, instances, len(parts))
    yield {"split": spec.split, "index": spec.index, "source": source,
           "path": spec.path, "file": name, "instances": instances}


def _finalize(shards: list[dict], results: list[dict], base: dict,
              metadata_path: str, parts_dir: str, launched: float) -> dict:
  """Renames every shard into place, then writes metadata.json (last), then
  removes the parts directory. Safe to retry."""
  written = Metrics.counter(NAMESPACE, "shards_written")
  t = time.time()
  splits: dict[str, list] = {}
  for shard in sorted(shards, key=lambda s: (s["split"] != "train",
                                             s["index"])):
    path = shard["path"]
    if fileio.exists(shard["source"]):
      fileio.makedirs(os.path.dirname(path) or ".")
      fileio.rename(shard["source"], path)
    elif not fileio.exists(path):
      raise RuntimeError(f"{shard['source']} is missing: cannot write {path}.")
    written.inc()
    logging.info("wrote %s: %d instances", path, shard["instances"])
    splits.setdefault(shard["split"], []).append(
        {"file": shard["file"], "instances": shard["instances"]})
  metadata = {
      **base,
      "splits": units.splits_summary(splits),
      "stats": units.totals(results),
      "seconds": round(time.time() - launched, 3),
      "timing": {**base["timing"], "pipeline": round(t - launched, 3),
                 "finalize": round(time.time() - t, 3)},
      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }
  schema.write_metadata(metadata_path, metadata)
  fileio.rmtree(parts_dir)
  logging.info("wrote %s", metadata_path)
  return metadata


def build_pipeline(p: beam.Pipeline, cfg: pipeline.PrepConfig,
                   files: list[str], plan: job.Plan, base: dict,
                   launched: float) -> None:
  """Adds the data-preparation transforms to `p`."""
  fileio.makedirs(plan.parts_dir)
  results = (
      p
      | "UnitIndexes" >> beam.Create(list(range(len(plan.units))))
      | "SpreadUnits" >> beam.Reshuffle()
      | "RunUnits" >> beam.ParDo(_RunUnit(cfg, plan.units, plan.parts_dir)))
  checked = (
      results
      | "AllUnits" >> beam.combiners.ToList()
      | "CheckUnits" >> beam.Map(_check_units, files))
  shards = (
      p
      | "ShardSpecs" >> beam.Create(shard_specs(plan))
      | "SpreadShards" >> beam.Reshuffle()
      | "AssembleShards" >> beam.ParDo(_AssembleShard(plan.parts_dir),
                                       beam.pvalue.AsSingleton(checked)))
  _ = (
      shards
      | "AllShards" >> beam.combiners.ToList()
      | "Finalize" >> beam.Map(_finalize, beam.pvalue.AsSingleton(checked),
                               base, plan.metadata_path, plan.parts_dir,
                               launched))


def _runner_name(options: beam_options.PipelineOptions) -> str:
  runner = options.view_as(beam_options.StandardOptions).runner
  if runner is None:
    return "DirectRunner"
  return runner if isinstance(runner, str) else type(runner).__name__


def _is_local(runner_name: str) -> bool:
  """Whether the runner runs on this machine (Beam also takes `direct`)."""
  name = runner_name.lower().rsplit(".", 1)[-1]
  return (name if name.endswith("runner") else name + "runner") in _LOCAL_RUNNERS


def generate(cfg: pipeline.PrepConfig, files: list[str], outputs: job.Outputs,
             pipeline_args=()) -> dict:
  """Runs the job on Beam (blocking); returns the metadata it wrote.

  `pipeline_args`: Beam options (`--runner=…`, `--project=…`, …).
  """
  launched = time.time()
  cfg, files, outputs = job.resolve_paths(cfg, files, outputs)
  job.check_flags(cfg)
  options = beam_options.PipelineOptions(list(pipeline_args))
  runner_name = _runner_name(options)
  tok = units.tokenizer(cfg)
  plan = job.make_plan(cfg, files, outputs)
  if not _is_local(runner_name):
    local = [p for p in [*files, cfg.vocab_file, plan.metadata_path]
             if not fileio.is_remote(p)]
    if local:
      logging.warning("%s runs on other machines, but these paths are local: "
                      "%s", runner_name, ", ".join(local))
  workers = options.view_as(beam_options.WorkerOptions).num_workers
  if _is_local(runner_name):
    workers = options.view_as(beam_options.DirectOptions).direct_num_workers
  base = units.metadata(
      cfg, tok, files, "fast", runner=f"beam:{runner_name}", workers=workers,
      timing={"start_up": round(time.time() - launched, 3)})
  logging.info("%d work units, %d train + %d eval shards; parts in %s",
               len(plan.units), len(plan.train_outputs),
               len(plan.eval_outputs), plan.parts_dir)
  p = beam.Pipeline(options=options)
  build_pipeline(p, cfg, files, plan, base, launched)
  result = p.run()
  state = result.wait_until_finish()
  if state != beam.runners.runner.PipelineState.DONE:
    raise RuntimeError(f"The pipeline ended in state {state}; no metadata "
                       f"was written to {plan.metadata_path}.")
  _log_counters(result)
  return schema.read_metadata(plan.metadata_path)


def _log_counters(result) -> None:
  try:
    counters = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(NAMESPACE))["counters"]
  except Exception:  # pylint: disable=broad-except
    return  # not every runner reports metrics to the launcher
  for c in sorted(counters, key=lambda c: c.key.metric.name):
    logging.info("counter %s = %s", c.key.metric.name, c.committed)


# --- command line ----------------------------------------------------------


def _parse_flags(argv: list[str]) -> list[str]:
  """absl parses its flags; the rest (after argv[0]) is for Beam."""
  return flags.FLAGS(argv, known_only=True)


def _beam_args(rest: list[str], flag_names: list[str]) -> list[str]:
  """Rejects a misspelt data-preparation flag (Beam would silently drop it);
  passes everything else to Beam."""
  for arg in rest:
    if not arg.startswith("-"):
      continue
    name = arg.lstrip("-").split("=", 1)[0]
    close = difflib.get_close_matches(name, flag_names, n=1, cutoff=0.88)
    if close and name != close[0]:
      raise job.FlagError(f"Unknown flag --{name}: did you mean --{close[0]}? "
                          "(Arguments that are not data-preparation flags go "
                          "to Beam.)")
  args = list(rest)
  if flags.FLAGS["num_workers"].present:
    args.append(f"--num_workers={flags.FLAGS.num_workers}")
  return args


def main(argv):
  # Imported here, not at the top: its flags must not be defined by merely
  # importing this module (Google's script, imported by some tests, defines
  # the same names).
  from data_prep import create_pretraining_data as cpd  # pylint: disable=g-import-not-at-top
  names = [f.name for f in flags.FLAGS.get_flags_for_module(cpd)]
  beam_args = _beam_args(argv[1:], names)
  if flags.FLAGS.engine != "fast":
    raise job.FlagError("--engine=reference holds the whole corpus in one "
                        "process; Beam runs the default fast engine only.")
  cfg, files, outputs = cpd.config_from_flags()
  metadata = generate(cfg, files, outputs, beam_args)
  print(json.dumps({k: metadata[k] for k in ("splits", "stats", "seconds")},
                   indent=1))


def run():
  from data_prep import create_pretraining_data as cpd  # pylint: disable=g-import-not-at-top
  flags.adopt_module_key_flags(cpd)  # --help lists them
  cli.run(main, errors=(ValueError, OSError), flags_parser=_parse_flags)


if __name__ == "__main__":
  # Run from the importable module, so that Beam pickles the DoFns by
  # reference to `data_prep.beam_pipeline`, not to `__main__`.
  from data_prep import beam_pipeline as _module  # pylint: disable=g-import-not-at-top
  _module.run()
