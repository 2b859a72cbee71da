"""Work units and shards: the chores both runners share.

The local job (`job.py`, one machine, worker processes) and the Beam
pipeline (`beam_pipeline.py`, many machines) run the same plan through these
functions, which is what makes their outputs byte-identical and lets either
reuse the other's finished units:

* a unit writes its train and eval parts, then its statistics (the "done"
  file), each under a temporary name renamed when complete (`write_unit`);
  a unit whose done file exists is not run again (`finished`);
* shard k of a split is the concatenation, in unit order, of the parts of
  the units u with `u * num_shards // num_units == k` (`shard_units`,
  `concatenate`; TFRecord files concatenate);
* the units' statistics add up into the job's (`totals`), which are checked
  before any shard is written (`report`) and recorded in metadata.json
  (`metadata`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable

from absl import logging

from data_prep import corpus
from data_prep import fileio
from data_prep import pipeline
from data_prep import tokenization
from data_prep import writer

SPLITS = ("train", "eval")
_CHUNK = 8 << 20  # bytes read at a time when concatenating parts


_TOKENIZERS: dict = {}  # per process: loaded once, shared by its units


def tokenizer(cfg: pipeline.PrepConfig):
  """The job's tokenizer, loaded once per process."""
  key = (cfg.vocab_file, cfg.do_lower_case, cfg.tokenizer)
  if key not in _TOKENIZERS:
    _TOKENIZERS.clear()
    _TOKENIZERS[key] = tokenization.load_tokenizer(*key)
  return _TOKENIZERS[key]


def part_path(parts_dir: str, unit: int, split: str) -> str:
  return fileio.join(parts_dir, f"unit-{unit:05d}.{split}.tfrecord")


def done_path(parts_dir: str, unit: int) -> str:
  return fileio.join(parts_dir, f"unit-{unit:05d}.json")


def finished(parts_dir: str, unit: int) -> dict | None:
  """The statistics of a unit an earlier run (either runner) finished."""
  done = done_path(parts_dir, unit)
  if not fileio.exists(done):
    return None
  with fileio.open_file(done, "r") as f:
    return json.load(f)


def write_unit(index: int, unit: corpus.Unit, cfg: pipeline.PrepConfig, tok,
               parts_dir: str, tag: str, chinese_flags=None,
               on_records: Callable[[str, int], None] | None = None) -> dict:
  """Runs one unit (`pipeline.unit_records`) into its parts, then writes its
  statistics; returns them. `tag` names the temporary files (unique per
  attempt); `on_records(split, count)` is told of each batch written."""
  stats = pipeline.UnitStats()
  start = time.perf_counter()
  outs = {s: writer.AtomicWriter(part_path(parts_dir, index, s), tag)
          for s in SPLITS}
  try:
    for split, count, framed in pipeline.unit_records(
        unit, index, cfg, tok, stats, chinese_flags):
      outs[split].write(framed)
      if on_records is not None:
        on_records(split, count)
  except BaseException:
    for w in outs.values():
      w.abort()
    raise
  for w in outs.values():
    w.close()
  result = {"unit": index, "seconds": time.perf_counter() - start,
            **stats.as_dict()}
  with fileio.atomic_write(done_path(parts_dir, index), tag=tag) as f:
    json.dump(result, f)
  return result


def shard_units(num_units: int, num_shards: int) -> list[tuple[int, ...]]:
  """The units (in order) of each of `num_shards` shards."""
  return [tuple(u for u in range(num_units) if u * num_shards // num_units == k)
          for k in range(num_shards)]


def concatenate(parts: list[str], dest: str, tag: str) -> int:
  """Writes the parts end to end into `dest` (atomically); returns bytes."""
  size = 0
  with writer.AtomicWriter(dest, tag) as w:
    for part in parts:
      with fileio.open_file(part, "rb") as f:
        while chunk := f.read(_CHUNK):
          w.write(chunk)
          size += len(chunk)
  return size


def totals(results: list[dict]) -> dict:
  """The job's statistics: the units' added up."""
  t = {"instances_train": 0, "instances_eval": 0, "random_next": 0,
       "masked": 0, "tokens": 0, "documents": 0, "pools": 0,
       "single_document_pools": 0, "lines": 0, "bytes": 0,
       "invalid_utf8_lines": 0, "empty_token_lines": 0,
       "files_with_invalid_utf8": {}}
  for r in results:
    t["instances_train"] += r["instances"]["train"]
    t["instances_eval"] += r["instances"]["eval"]
    for k in ("random_next", "masked", "tokens", "documents", "pools",
              "single_document_pools"):
      t[k] += r[k]
    for k in ("lines", "bytes", "invalid_utf8_lines", "empty_token_lines"):
      t[k] += r["read"][k]
    for f, c in r["read"]["files_with_invalid_utf8"].items():
      t["files_with_invalid_utf8"][f] = t["files_with_invalid_utf8"].get(f, 0) + c
    if "seconds" in r:
      t.setdefault("unit_seconds", []).append(round(r["seconds"], 3))
  return t


def report(t: dict, files) -> None:
  """Refuses an empty corpus; logs the warnings and the totals."""
  if t["documents"] == 0:
    raise corpus.InputError(
        f"Empty corpus: no line of {files or 'the TFDS split'} produced a "
        "token. Expected text with one sentence per line and blank lines "
        "between documents.")
  for f, c in t["files_with_invalid_utf8"].items():
    logging.warning("%s: %d line(s) with invalid UTF-8; the invalid bytes were "
                    "dropped (as Google's script does).", f, c)
  if t["documents"] == 1:
    logging.warning(
        "The corpus has a single document: every 'random next' segment B "
        "comes from that same document, so next_sentence_labels=1 is wrong "
        "for them (Google's script does the same). Add documents separated by "
        "blank lines.")
  elif t["single_document_pools"]:
    logging.warning("%d document pool(s) held one document; their NSP "
                    "negatives come from the same document.",
                    t["single_document_pools"])
  logging.info("Wrote %d train + %d eval instances from %d documents "
               "(%d tokens); %.1f%% random-next.", t["instances_train"],
               t["instances_eval"], t["documents"], t["tokens"],
               100.0 * t["random_next"] / max(1, t["instances_train"] +
                                              t["instances_eval"]))


def metadata(cfg: pipeline.PrepConfig, tok, files: list[str], engine: str,
             **fields) -> dict:
  """metadata.json's description of the job (the shard layout, the vocab,
  the config, the inputs), plus the runner's `fields` (splits, stats, …)."""
  return {
      "max_seq_length": cfg.max_seq_length,
      "max_predictions_per_seq": cfg.max_predictions_per_seq,
      "vocab": {**tok.describe(), "file": cfg.vocab_file},
      "config": dataclasses.asdict(cfg),
      "engine": engine,
      "inputs": files or [f"tfds:{cfg.tfds_name}"],
      **fields,
  }


def splits_summary(shards: dict[str, list[dict]]) -> dict:
  """{split: {"instances", "shards"}} from each split's shard records."""
  return {k: {"instances": sum(s["instances"] for s in v), "shards": v}
          for k, v in shards.items()}
