"""The hand-over format between data preparation and training.

Google's TFRecord feature layout and the `metadata.json` written beside the
shards. Both halves import this module (it needs neither TensorFlow nor JAX).
"""

from __future__ import annotations

import json
import os
from typing import Any

from data_prep import fileio

FORMAT = "bert_jax.pretraining_data"
VERSION = 1
METADATA_NAME = "metadata.json"


def feature_layout(max_seq_length: int, max_predictions_per_seq: int):
  """(name, dtype, length) of each feature, in Google's order.

  Build a parse spec with `tf.io.FixedLenFeature([length], dtype)`.
  """
  s, p = max_seq_length, max_predictions_per_seq
  return (("input_ids", "int64", s), ("input_mask", "int64", s),
          ("segment_ids", "int64", s), ("masked_lm_positions", "int64", p),
          ("masked_lm_ids", "int64", p), ("masked_lm_weights", "float32", p),
          ("next_sentence_labels", "int64", 1))


def masked(meta: dict[str, Any]) -> bool:
  """Whether the shards carry MLM masks (False: `--masking=none`; their
  masked_lm_* features are all zero)."""
  return meta.get("config", {}).get("masking", "static") != "none"


def pairs(meta: dict[str, Any]) -> bool:
  """Whether the examples are sentence pairs with NSP labels (False:
  `--nsp=False`, one segment each, label 0)."""
  return meta.get("config", {}).get("nsp", True)


class MetadataError(ValueError):
  """Shards and the consumer's configuration disagree."""


def sidecar_path(output_file: str) -> str:
  """The metadata file of `--output_file=x.tfrecord`: `x.metadata.json`,
  which no `x.tfrecord*` glob (Google-style readers) matches."""
  root, ext = os.path.splitext(output_file)
  return (root if ext else output_file) + ".metadata.json"


def sidecar_names(shard: str) -> tuple[str, ...]:
  """Where a shard's own metadata may be: `sidecar_path`, then the name
  used before it (`x.tfrecord.metadata.json`)."""
  return tuple(dict.fromkeys((sidecar_path(shard), shard + ".metadata.json")))


def write_metadata(path: str, metadata: dict[str, Any]) -> None:
  with fileio.atomic_write(path) as f:
    json.dump({"format": FORMAT, "version": VERSION, **metadata}, f, indent=2,
              sort_keys=True)
    f.write("\n")


def read_metadata(path: str) -> dict[str, Any]:
  with fileio.open_file(path, "r") as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT:
    raise MetadataError(f"{path}: not a bert_jax data metadata file.")
  if meta.get("version", 0) > VERSION:
    raise MetadataError(f"{path}: metadata version {meta['version']} is newer "
                        f"than this code understands ({VERSION}); upgrade.")
  return meta


def check_compatible(meta: dict[str, Any], *, max_seq_length: int,
                     max_predictions_per_seq: int, vocab_size: int | None = None,
                     source: str = "metadata") -> None:
  """Raises MetadataError naming each field where data and config disagree."""
  problems = []
  if meta["max_seq_length"] != max_seq_length:
    problems.append(f"max_seq_length is {meta['max_seq_length']} in the data, "
                    f"{max_seq_length} in the config")
  if meta["max_predictions_per_seq"] != max_predictions_per_seq:
    problems.append(
        f"max_predictions_per_seq is {meta['max_predictions_per_seq']} in the "
        f"data, {max_predictions_per_seq} in the config")
  if vocab_size is not None and meta["vocab"]["vocab_size"] > vocab_size:
    problems.append(f"the data's vocab has {meta['vocab']['vocab_size']} ids "
                    f"but the model's embedding table only {vocab_size}")
  if problems:
    raise MetadataError(f"{source}: " + "; ".join(problems) + ".")
