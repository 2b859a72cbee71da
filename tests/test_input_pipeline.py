"""tf.data input: Google's features, host split, determinism, exact resume."""

import os

import numpy as np
import pytest

from bert_jax import input_pipeline
from data_prep import job
from data_prep import pipeline


@pytest.fixture(scope="module")
def shards(tmp_path_factory, vocab_file, english_corpus):
  d = str(tmp_path_factory.mktemp("shards"))
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=32,
                            max_predictions_per_seq=5, dupe_factor=1)
  job.generate(cfg, [english_corpus], job.Outputs(output_dir=d, num_shards=4))
  return os.path.join(d, "train-*")


def _spec(files, batch=8):
  return input_pipeline.DataSpec(files, 32, 5, batch, 30522)


def _take(ds, n):
  return [b for _, b in zip(range(n), ds.as_numpy_iterator())]


def test_batches_have_googles_features_as_int32(shards):
  batch = _take(input_pipeline.host_dataset(_spec(shards), seed=1), 1)[0]
  assert batch["input_ids"].shape == (8, 32)
  assert batch["masked_lm_positions"].shape == (8, 5)
  assert batch["next_sentence_labels"].shape == (8, 1)
  assert batch["input_ids"].dtype == np.int32
  assert batch["masked_lm_weights"].dtype == np.float32


def test_deterministic_and_resumable_by_position(shards):
  a = _take(input_pipeline.host_dataset(_spec(shards), seed=3), 6)
  b = _take(input_pipeline.host_dataset(_spec(shards), seed=3), 6)
  resumed = _take(input_pipeline.host_dataset(_spec(shards), seed=3,
                                              start_step=4), 2)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
  for x, y in zip(a[4:], resumed):
    np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
  other = _take(input_pipeline.host_dataset(_spec(shards), seed=4), 1)[0]
  assert not np.array_equal(other["input_ids"], a[0]["input_ids"])


def test_hosts_read_disjoint_files(shards):
  seen = []
  for host in range(2):
    ds = input_pipeline.host_dataset(_spec(shards, 8), seed=0, training=False,
                                     process_index=host, process_count=2)
    rows = {tuple(r) for b in ds.as_numpy_iterator() for r in b["input_ids"]}
    assert rows
    seen.append(rows)
  assert not seen[0] & seen[1]


def test_fixed_streams_make_batches_independent_of_the_host_count(shards):
  """2 streams: one process reading both gives the global batch that two
  processes (one stream each) assemble, step for step, resumed or not."""
  one = _take(input_pipeline.host_dataset(_spec(shards, 8), seed=5,
                                          streams=2, start_step=1), 3)
  two = [_take(input_pipeline.host_dataset(
      _spec(shards, 8), seed=5, streams=2, start_step=1, process_index=h,
      process_count=2), 3) for h in range(2)]
  for step in range(3):
    for key in one[step]:
      np.testing.assert_array_equal(
          one[step][key], np.concatenate([two[0][step][key],
                                          two[1][step][key]]))
  with pytest.raises(input_pipeline.DataError, match="multiple of the 2"):
    input_pipeline.host_dataset(_spec(shards, 8), seed=5, streams=3,
                                process_index=0, process_count=2)


def test_clear_errors(shards, tmp_path):
  with pytest.raises(input_pipeline.DataError, match="No TFRecord files"):
    input_pipeline.host_dataset(_spec(str(tmp_path / "none-*")), seed=0)
  with pytest.raises(input_pipeline.DataError, match="not divisible"):
    input_pipeline.host_dataset(_spec(shards, 9), seed=0, process_index=0,
                                process_count=2)
  with pytest.raises(input_pipeline.DataError,
                     match="max_predictions_per_seq is 5 in the data, 6"):
    input_pipeline.host_dataset(input_pipeline.DataSpec(shards, 32, 6, 8),
                                seed=0)
  small_vocab = input_pipeline.DataSpec(shards, 32, 5, 8, vocab_size=1000)
  with pytest.raises(input_pipeline.DataError, match="embedding table only 1000"):
    input_pipeline.host_dataset(small_vocab, seed=0)


def test_shards_without_metadata_are_checked_by_their_first_record(shards,
                                                                   tmp_path):
  import glob  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  src = sorted(glob.glob(shards))[0]
  dst = tmp_path / "google_style.tfrecord"
  shutil.copy(src, dst)
  ok = input_pipeline.DataSpec(str(dst), 32, 5, 4)
  assert _take(input_pipeline.host_dataset(ok, seed=0), 1)
  with pytest.raises(input_pipeline.DataError,
                     match="records have max_seq_length=32"):
    input_pipeline.host_dataset(input_pipeline.DataSpec(str(dst), 48, 5, 4),
                                seed=0)
