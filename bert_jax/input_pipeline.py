"""tf.data over pretraining TFRecords → globally sharded JAX batches.

Reads shards written by `data_prep` (or by Google's script) with Google's
feature spec. Each host reads its own subset of files; the global batch is
assembled with `jax.make_array_from_process_local_data`. The stream is a
deterministic function of (files, seed): file order is reshuffled each epoch
with a fixed seed, files are interleaved deterministically, records pass a
seeded shuffle buffer. Resuming at a position (records already consumed by
this host) skips that many raw records before parsing, so a resumed run sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf

from data_prep import schema


class DataError(ValueError):
  """Training data that does not fit the configuration."""


@dataclasses.dataclass(frozen=True)
class DataSpec:
  files: str  # comma-separated globs
  max_seq_length: int
  max_predictions_per_seq: int
  global_batch_size: int
  vocab_size: int | None = None


def list_files(patterns: str) -> list[str]:
  files: list[str] = []
  for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise DataError(f"No TFRecord files match {pattern!r}.")
    files.extend(m for m in matched if m not in files)
  if not files:
    raise DataError("No training files given (set phaseN.train_files).")
  return files


def check_metadata(files: list[str], spec: DataSpec) -> None:
  """Refuses data whose metadata (or first record) disagrees with `spec`."""
  seen = set()
  for f in files:
    d = os.path.dirname(f)
    for meta_path in (os.path.join(d, schema.METADATA_NAME),
                      f + ".metadata.json"):
      if meta_path in seen or not tf.io.gfile.exists(meta_path):
        continue
      seen.add(meta_path)
      try:
        schema.check_compatible(
            schema.read_metadata(meta_path),
            max_seq_length=spec.max_seq_length,
            max_predictions_per_seq=spec.max_predictions_per_seq,
            vocab_size=spec.vocab_size, source=meta_path)
      except schema.MetadataError as e:
        raise DataError(str(e)) from e
  if not seen:  # e.g. shards from Google's script: check the first record
    record = next(iter(tf.data.TFRecordDataset(files[:1]).take(1)), None)
    if record is None:
      raise DataError(f"{files[0]} holds no records.")
    feats = tf.train.Example.FromString(record.numpy()).features.feature
    got = (len(feats["input_ids"].int64_list.value),
           len(feats["masked_lm_ids"].int64_list.value))
    want = (spec.max_seq_length, spec.max_predictions_per_seq)
    if got != want:
      raise DataError(f"{files[0]}: records have max_seq_length={got[0]}, "
                      f"max_predictions_per_seq={got[1]}; the config expects "
                      f"{want[0]} and {want[1]}.")


def _parse_fn(spec: DataSpec):
  features = {
      name: tf.io.FixedLenFeature([n], tf.float32 if dt == "float32"
                                  else tf.int64)
      for name, dt, n in schema.feature_layout(spec.max_seq_length,
                                                spec.max_predictions_per_seq)}

  def parse(records):
    ex = tf.io.parse_example(records, features)
    return {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v
            for k, v in ex.items()}
  return parse


def host_dataset(spec: DataSpec, seed: int, start_records: int = 0,
                 shuffle_buffer: int = 10_000, training: bool = True,
                 process_index: int | None = None,
                 process_count: int | None = None) -> tf.data.Dataset:
  """This host's part of the stream, batched to its share of the batch."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if spec.global_batch_size % process_count:
    raise DataError(f"global_batch_size={spec.global_batch_size} is not "
                    f"divisible by the {process_count} processes.")
  files = list_files(spec.files)
  check_metadata(files, spec)
  if len(files) < process_count:
    raise DataError(f"{len(files)} file(s) for {process_count} processes: "
                    "write at least one shard per host (--num_shards).")
  files = files[process_index::process_count]
  host_batch = spec.global_batch_size // process_count
  ds = tf.data.Dataset.from_tensor_slices(files)
  if training:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                     block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed + 1,
                    reshuffle_each_iteration=True)
  if start_records:
    ds = ds.skip(start_records)
  ds = ds.batch(host_batch, drop_remainder=True)
  ds = ds.map(_parse_fn(spec), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def global_batches(ds: tf.data.Dataset, sharding) -> Iterator[dict]:
  """Host batches → global jax.Arrays laid out by `sharding`."""
  for host_batch in ds.as_numpy_iterator():
    yield {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
           for k, v in host_batch.items()}
