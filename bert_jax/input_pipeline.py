"""tf.data over pretraining TFRecords → globally sharded JAX batches.

Reads shards written by `data_prep` (or by Google's script) with Google's
feature spec. The files are dealt into input streams (one per host by
default, or a fixed number); each host reads only its streams' files, and the
global batch is assembled with `jax.make_array_from_process_local_data`. Each
stream is a deterministic function of (its files, seed): file order is
reshuffled each epoch with a fixed seed, files are interleaved
deterministically, records pass a seeded shuffle buffer. Resuming at a step
skips the records already consumed before parsing, so a resumed run sees
exactly the batches an uninterrupted run would have seen. `packed_batches`
packs each stream's examples into rows (`packing.py`) before batching;
resuming then replays the packing of the skipped batches (a function of the
stream), which costs parsing the records consumed so far.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf

from bert_jax import packing as packing_lib
from data_prep import schema

_PACK_CHUNK = 256  # records parsed at a time for the packer


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


def by_metadata(files: list[str]) -> dict[str | None, list[str]]:
  """The files grouped by the metadata file that describes them: the
  directory's metadata.json, else the shard's sidecar (None: no metadata,
  e.g. shards from Google's script)."""
  out: dict[str | None, list[str]] = {}
  for f in files:
    found = next((p for p in (os.path.join(os.path.dirname(f),
                                           schema.METADATA_NAME),
                              *schema.sidecar_names(f))
                  if tf.io.gfile.exists(p)), None)
    out.setdefault(found, []).append(f)
  return out


def check_metadata(files: list[str], spec: DataSpec) -> None:
  """Refuses data whose metadata (or first record) disagrees with `spec`."""
  seen = [p for p in by_metadata(files) if p is not None]
  for meta_path in seen:
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


def resolve_streams(streams: int, process_count: int) -> int:
  """Input streams (-1 or 0: one per process); a multiple of the processes."""
  streams = process_count if streams <= 0 else streams
  if streams % process_count:
    raise DataError(f"data_streams={streams} must be a multiple of the "
                    f"{process_count} processes.")
  return streams


def _stream(files: list[str], seed: int, training: bool,
            shuffle_buffer: int) -> tf.data.Dataset:
  """Serialized records of one stream: its files, shuffled and repeated."""
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
  return ds


def _host_streams(spec: DataSpec, seed: int, shuffle_buffer: int,
                  training: bool, process_index: int | None,
                  process_count: int | None, streams: int):
  """This host's record streams ([serialized records] datasets) and the
  examples each contributes to a batch."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  streams = resolve_streams(streams, process_count)
  if spec.global_batch_size % streams:
    raise DataError(f"global_batch_size={spec.global_batch_size} is not "
                    f"divisible by the {streams} input streams "
                    f"({process_count} processes).")
  files = list_files(spec.files)
  check_metadata(files, spec)
  if training and len(files) < streams:
    raise DataError(f"{len(files)} file(s) for {streams} input streams "
                    f"({process_count} processes): write at least one shard "
                    "per stream (--num_shards).")
  mine = range(process_index * streams // process_count,
               (process_index + 1) * streams // process_count)
  parts = []
  for s in mine:
    if training:
      parts.append(_stream(files[s::streams], seed, training, shuffle_buffer))
    else:  # held-out data may have fewer files than streams: deal records
      parts.append(tf.data.TFRecordDataset(files).shard(streams, s))
  return parts, spec.global_batch_size // streams


def _options(ds: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


def _parsed_chunks(records: tf.data.Dataset, spec: DataSpec) -> tf.data.Dataset:
  """Serialized records → parsed chunks of `_PACK_CHUNK` examples (the last
  may be shorter), for the packer."""
  return _options(records.batch(_PACK_CHUNK).map(
      _parse_fn(spec), num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True))


def host_dataset(spec: DataSpec, seed: int, start_step: int = 0,
                 shuffle_buffer: int = 10_000, training: bool = True,
                 process_index: int | None = None,
                 process_count: int | None = None,
                 streams: int = -1) -> tf.data.Dataset:
  """This host's part of the stream, batched to its share of the batch.

  The files are dealt round-robin into `streams` independent streams (default:
  one per process); each global batch is the concatenation of one equal
  sub-batch from every stream, in stream order, and each process reads and
  parses only its own streams (evaluation deals records instead of files,
  since held-out splits are small). With a fixed number of streams the global
  batches do not depend on the number of processes. `start_step` skips the
  batches a resumed run has already consumed.
  """
  parts, per_stream = _host_streams(spec, seed, shuffle_buffer, training,
                                    process_index, process_count, streams)
  if start_step:
    parts = [ds.skip(start_step * per_stream) for ds in parts]
  parts = [ds.batch(per_stream, drop_remainder=True) for ds in parts]
  ds = parts[0] if len(parts) == 1 else tf.data.Dataset.zip(tuple(parts)).map(
      lambda *xs: tf.concat(xs, axis=0))
  ds = ds.map(_parse_fn(spec), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  return _options(ds).prefetch(tf.data.AUTOTUNE)


def packed_batches(spec: DataSpec, seed: int, max_per_row: int,
                   start_step: int = 0, shuffle_buffer: int = 10_000,
                   training: bool = True, process_index: int | None = None,
                   process_count: int | None = None, streams: int = -1,
                   open_rows: int = 32, prefetch: int = 2) -> Iterator[dict]:
  """`host_dataset`'s streams, each packed (`packing.Packer`, up to
  `max_per_row` examples per row) and batched to its share of the rows;
  numpy batches, packed in a background thread. Resuming replays the packing
  of the `start_step` batches already consumed."""
  parts, per_stream = _host_streams(spec, seed, shuffle_buffer, training,
                                    process_index, process_count, streams)
  packers = [packing_lib.pack(
      _parsed_chunks(ds, spec).prefetch(2).as_numpy_iterator(),
      spec.max_seq_length, spec.max_predictions_per_seq, max_per_row,
      per_stream, open_rows) for ds in parts]

  def batches():
    for step, subs in enumerate(zip(*packers)):
      if step >= start_step:
        yield {k: np.concatenate([b[k] for b in subs]) for k in subs[0]}
  return _background(batches(), prefetch)


def held_out_batches(spec: DataSpec, num_batches: int, max_per_row: int = 0,
                     streams: int = -1, open_rows: int = 32,
                     transform=None) -> list[dict]:
  """This host's share of a held-out evaluation as numpy batches, read once:
  the examples of the first `num_batches` global batches of
  `host_dataset(training=False)` (fewer if the data runs out; the remainder
  dropped, as there). With `max_per_row` > 0 the same examples are packed
  (`packing.Packer`) into fewer rows; the last batch is padded with empty
  rows, and a host with fewer batches gets empty ones, so that every process
  runs the same steps. `transform(examples, stream)`: applied to each
  stream's examples before batching (e.g. masks for unmasked shards)."""
  parts, per_stream = _host_streams(spec, 0, 0, False, None, None, streams)
  want = num_batches * per_stream
  streams_ex = []
  for ds in parts:
    chunks = list(_parsed_chunks(ds.take(want), spec).as_numpy_iterator())
    streams_ex.append({k: np.concatenate([c[k] for c in chunks])
                       for k in chunks[0]} if chunks else {})
  have = min(len(ex.get("input_ids", ())) for ex in streams_ex)
  n = _across_hosts(np.min, have // per_stream) * per_stream
  streams_ex = [{k: v[:n] for k, v in ex.items()} for ex in streams_ex]
  if not n:
    return []
  if transform is not None:
    first = (jax.process_index() * resolve_streams(streams, jax.process_count())
             // jax.process_count())
    streams_ex = [transform(ex, first + i) for i, ex in enumerate(streams_ex)]
  if not max_per_row:
    return [{k: np.concatenate([ex[k][i:i + per_stream] for ex in streams_ex])
             for k in streams_ex[0]} for i in range(0, n, per_stream)]
  packed = []
  for ex in streams_ex:
    packer = packing_lib.Packer(spec.max_seq_length,
                                spec.max_predictions_per_seq, max_per_row,
                                per_stream, open_rows)
    packed.append(packer.add(ex) + packer.flush(partial=True))
  count = _across_hosts(np.max, max(len(p) for p in packed))
  empty = {k: np.zeros((per_stream, size), dtype) for k, (size, dtype) in
           packing_lib.feature_shapes(spec.max_seq_length,
                                      spec.max_predictions_per_seq,
                                      max_per_row).items()}
  return [{k: np.concatenate([p[i][k] if i < len(p) else empty[k]
                              for p in packed]) for k in empty}
          for i in range(count)]


def _across_hosts(reduce, value: int) -> int:
  """`reduce` (np.min, np.max) of an int over all processes."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(reduce(multihost_utils.process_allgather(np.int32(value))))


def _background(it: Iterator, size: int) -> Iterator:
  """Runs `it` in a thread, `size` items ahead; re-raises its errors. The
  thread ends when the consumer closes or drops this generator."""
  q: queue.Queue = queue.Queue(maxsize=size)
  stop, done = threading.Event(), object()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        q.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def work():
    try:
      for item in it:
        if not put(item):
          return
      put(done)
    except BaseException as e:  # pylint: disable=broad-except
      put(e)
  threading.Thread(target=work, daemon=True).start()
  try:
    while True:
      item = q.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()


def global_batches(ds, sharding,
                   files: list[str] | None = None) -> Iterator[dict]:
  """Host batches (a `host_dataset`, or numpy batches from `packed_batches`)
  → global jax.Arrays laid out by `sharding`. A corrupt or truncated TFRecord
  raises `DataError` naming the file (found among `files`)."""
  it = ds.as_numpy_iterator() if isinstance(ds, tf.data.Dataset) else iter(ds)
  while True:
    try:
      host_batch = next(it)
    except StopIteration:
      return
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      raise DataError(_diagnose(files or [], e)) from e
    except packing_lib.PackingError as e:
      raise DataError(f"{e} (files: {', '.join(files or [])})") from e
    yield {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
           for k, v in host_batch.items()}


def _diagnose(files: list[str], error: Exception) -> str:
  """Reads the files one by one to name the one that fails."""
  msg = str(error).strip().splitlines()[0] if str(error).strip() else ""
  for f in files:
    try:
      for _ in tf.data.TFRecordDataset(f):
        pass
    except tf.errors.OpError as e:
      return (f"{f}: corrupt or truncated TFRecord file "
              f"({str(e).strip().splitlines()[0]}). Regenerate it with "
              "data_prep (a rerun redoes unfinished shards) or leave it out "
              "of the phase's train_files.")
  return (f"Reading the training data failed ({msg}); every file reads "
          "cleanly on its own, so check the records' features.")
