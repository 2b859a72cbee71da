"""Example encoding and TFRecord framing, against TensorFlow's own."""

import numpy as np
import pytest
import tensorflow as tf

from data_prep import example_encoder
from data_prep import schema
from data_prep import writer


def _features(rng, n, top):
  f = {"input_ids": rng.integers(0, top, (n, 16)),
       "input_mask": rng.integers(0, 2, (n, 16)),
       "masked_lm_weights": rng.random((n, 3)).astype(np.float32),
       "next_sentence_labels": rng.integers(0, 2, (n, 1))}
  f["input_ids"][0, :6] = [0, 127, 128, 16383, 16384, min(top - 1, 2**21)]
  return f


@pytest.mark.parametrize("top", [100, 30522, 2**21 + 9, 2**45])
def test_examples_equal_tensorflow_protos(top):
  rng = np.random.default_rng(top % 1000)
  feats = _features(rng, 40, top)
  recs = example_encoder.encode_examples(feats)
  assert len(recs) == 40
  for r, rec in enumerate(recs):
    want = tf.train.Example()
    for k, v in feats.items():
      if v.dtype.kind == "f":
        want.features.feature[k].float_list.value.extend(v[r].tolist())
      else:
        want.features.feature[k].int64_list.value.extend(v[r].tolist())
    got = tf.train.Example.FromString(rec)
    assert got == want
    # Same length as TensorFlow's serialization (only map order may differ).
    assert len(rec) == len(want.SerializeToString())


def test_records_parse_with_googles_feature_spec(tmp_path):
  s, p = 32, 5
  rng = np.random.default_rng(0)
  feats = {name: (rng.random((7, n)).astype(np.float32) if dt == "float32"
                  else rng.integers(0, 30000, (7, n)))
           for name, dt, n in schema.feature_layout(s, p)}
  path = str(tmp_path / "x.tfrecord")
  with writer.AtomicWriter(path) as w:
    w.write_records(example_encoder.encode_examples(feats))
  spec = {name: tf.io.FixedLenFeature([n], tf.float32 if dt == "float32"
                                      else tf.int64)
          for name, dt, n in schema.feature_layout(s, p)}
  parsed = [tf.io.parse_single_example(r, spec)
            for r in tf.data.TFRecordDataset(path)]
  assert len(parsed) == 7
  for i, ex in enumerate(parsed):
    for name in feats:
      np.testing.assert_allclose(ex[name].numpy(), feats[name][i])
  assert len(list(writer.read_records(path))) == 7


def test_read_records_reports_corruption(tmp_path):
  path = tmp_path / "x.tfrecord"
  recs = example_encoder.encode_examples({"a": np.arange(30).reshape(10, 3)})
  data = writer.frame_records(recs)
  path.write_bytes(data[:-7])
  with pytest.raises(ValueError, match="truncated record 9"):
    list(writer.read_records(str(path)))
  bad = bytearray(data)
  bad[20] ^= 0xFF
  path.write_bytes(bytes(bad))
  with pytest.raises(ValueError, match="corrupt data CRC in record 0"):
    list(writer.read_records(str(path)))


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
  path = tmp_path / "shard.tfrecord"
  with pytest.raises(RuntimeError):
    with writer.AtomicWriter(str(path)) as w:
      w.write_records([b"abc"])
      raise RuntimeError("killed")
  assert list(tmp_path.iterdir()) == []
