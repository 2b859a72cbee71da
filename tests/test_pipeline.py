"""The fast engine end to end: shards, metadata, held-out split, workers,
resumption, and statistics that match Google's procedure."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data_prep import job
from data_prep import pipeline
from data_prep import reference
from data_prep import schema
from data_prep import tokenization


def _parse(paths, s=128, p=20):
  spec = {name: tf.io.FixedLenFeature([n], tf.float32 if dt == "float32"
                                      else tf.int64)
          for name, dt, n in schema.feature_layout(s, p)}
  out = {k: [] for k in spec}
  for path in paths:
    for rec in tf.data.TFRecordDataset(path):
      ex = tf.io.parse_single_example(rec, spec)
      for k in spec:
        out[k].append(ex[k].numpy())
  return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def marked_corpus(tmp_path_factory, english_corpus, vocab_file):
  """The English corpus with a unique triple of vocab words opening each
  document, to trace documents into instances."""
  with open(english_corpus, encoding="utf-8") as f:
    docs = [d for d in f.read().split("\n\n") if d.strip()]
  words = [w for w in tokenization.read_vocab(vocab_file)
           if w.isalpha() and w.isascii() and len(w) >= 5]
  rng = np.random.default_rng(0)
  markers = [tuple(rng.choice(words, 3, replace=False)) for _ in docs]
  path = tmp_path_factory.mktemp("marked") / "marked.txt"
  with open(path, "w", encoding="utf-8") as f:
    for m, d in zip(markers, docs):
      f.write(" ".join(m) + " " + d.strip() + "\n\n")
  return str(path), markers


def _cfg(vocab_file, **kw):
  base = dict(vocab_file=vocab_file, dupe_factor=2, pool_tokens=20_000)
  base.update(kw)
  return pipeline.PrepConfig(**base)


def test_shards_metadata_and_held_out_split(tmp_path, vocab_file,
                                            marked_corpus):
  path, doc_markers = marked_corpus
  n_docs = len(doc_markers)
  cfg = _cfg(vocab_file, eval_fraction=0.2)
  out = str(tmp_path / "data")
  meta = job.generate(cfg, [path], job.Outputs(output_dir=out, num_shards=3,
                                               num_eval_shards=2, unit_mb=0.05))
  names = sorted(os.listdir(out))
  assert names == ["eval-00000-of-00002.tfrecord", "eval-00001-of-00002.tfrecord",
                   "metadata.json", "train-00000-of-00003.tfrecord",
                   "train-00001-of-00003.tfrecord", "train-00002-of-00003.tfrecord"]
  on_disk = schema.read_metadata(os.path.join(out, "metadata.json"))
  assert on_disk["max_seq_length"] == 128
  assert on_disk["max_predictions_per_seq"] == 20
  assert on_disk["vocab"]["vocab_size"] == 30522
  assert len(on_disk["vocab"]["sha256"]) == 64
  assert on_disk["stats"]["documents"] == n_docs
  tok = tokenization.load_tokenizer(vocab_file)
  marker_ids = {tuple(tok.vocab[w] for w in m) for m in doc_markers}
  markers = {}
  for split in ("train", "eval"):
    shards = on_disk["splits"][split]["shards"]
    data = _parse([os.path.join(out, s["file"]) for s in shards])
    assert len(data["input_ids"]) == sum(s["instances"] for s in shards) > 0
    assert meta["splits"][split]["instances"] == len(data["input_ids"])
    # Every instance is well formed.
    ids, mask = data["input_ids"], data["input_mask"]
    n = mask.sum(1)
    assert (ids[:, 0] == tok.cls_id).all()
    assert (ids[np.arange(len(ids)), n - 1] == tok.sep_id).all()
    assert ((ids != 0) | (mask == 0) | (ids == 0)).all()
    assert (ids[mask == 0] == 0).all() and (data["segment_ids"][mask == 0] == 0).all()
    w = data["masked_lm_weights"]
    assert ((w == 0) | (w == 1)).all()
    k = w.sum(1).astype(int)
    assert (k == np.minimum(20, np.maximum(1, np.rint(n * 0.15)))).all()
    # Restore the original tokens, then collect the document markers seen.
    orig = ids.copy()
    rows = np.nonzero(w)[0]
    orig[rows, data["masked_lm_positions"][w > 0]] = data["masked_lm_ids"][w > 0]
    labels = data["masked_lm_ids"]
    found = set()
    for row in orig:
      row = row.tolist()
      for i in range(len(row) - 2):
        if tuple(row[i:i + 3]) in marker_ids:
          found.add(tuple(row[i:i + 3]))
    markers[split] = found
    assert labels.max() < 30522
  assert markers["train"] and markers["eval"]
  assert not markers["train"] & markers["eval"]
  frac = on_disk["stats"]["instances_eval"] / (
      on_disk["stats"]["instances_eval"] + on_disk["stats"]["instances_train"])
  assert 0.1 < frac < 0.3


def test_output_does_not_depend_on_workers(tmp_path, vocab_file,
                                           english_corpus):
  cfg = _cfg(vocab_file)
  outputs = {}
  for workers in (1, 2):
    out = str(tmp_path / f"w{workers}")
    job.generate(cfg, [english_corpus],
                 job.Outputs(output_dir=out, num_shards=2, unit_mb=0.06),
                 workers=workers)
    outputs[workers] = [open(os.path.join(out, f), "rb").read()
                        for f in sorted(os.listdir(out)) if "tfrecord" in f]
  assert outputs[1] == outputs[2]
  assert sum(map(len, outputs[1])) > 100_000


def test_resume_reuses_finished_units_and_equals_uninterrupted(
    tmp_path, vocab_file, english_corpus, monkeypatch):
  cfg = _cfg(vocab_file)
  outputs = job.Outputs(output_dir=str(tmp_path / "full"), num_shards=2,
                        unit_mb=0.06)
  job.generate(cfg, [english_corpus], outputs)
  want = [open(os.path.join(outputs.output_dir, f), "rb").read()
          for f in sorted(os.listdir(outputs.output_dir)) if "tfrecord" in f]

  killed = job.Outputs(output_dir=str(tmp_path / "killed"), num_shards=2,
                       unit_mb=0.06)
  real_run_unit = job.run_unit
  calls = []

  def dying_run_unit(index, unit, cfg, parts_dir):
    calls.append(index)
    if index == 2:
      raise KeyboardInterrupt("killed")
    return real_run_unit(index, unit, cfg, parts_dir)

  monkeypatch.setattr(job, "run_unit", dying_run_unit)
  with pytest.raises(KeyboardInterrupt):
    job.generate(cfg, [english_corpus], killed)
  # Nothing that looks finished: no shard, no metadata, only hidden parts.
  assert all(f.startswith(".parts-") for f in os.listdir(killed.output_dir))
  monkeypatch.setattr(job, "run_unit", real_run_unit)
  done_before = [f for f in os.listdir(os.path.join(
      killed.output_dir, os.listdir(killed.output_dir)[0])) if f.endswith(".json")]
  assert len(done_before) == 2  # units 0 and 1 finished and are reused
  job.generate(cfg, [english_corpus], killed)
  got = [open(os.path.join(killed.output_dir, f), "rb").read()
         for f in sorted(os.listdir(killed.output_dir)) if "tfrecord" in f]
  assert got == want


def test_fast_engine_statistics_match_reference(vocab_file, english_corpus):
  """Same corpus and flags: the fast engine's instances look like Google's."""
  tok = tokenization.load_tokenizer(vocab_file)
  cfg = _cfg(vocab_file, dupe_factor=5, pool_tokens=10**9)
  ref = reference.reference_features([english_corpus], cfg, tok,
                                     pipeline.masking_spec(cfg, tok))
  unit = job.corpus.Unit(ranges=((english_corpus, 0,
                                  os.path.getsize(english_corpus)),))
  fast = {"input_mask": [], "next_sentence_labels": [], "masked_lm_weights": []}
  for _, count, framed in pipeline.unit_records(unit, 0, cfg, tok):
    records = list(job.writer.iter_framed(framed))
    assert len(records) == count
    for r in records:
      ex = tf.train.Example.FromString(r).features.feature
      fast["input_mask"].append(sum(ex["input_mask"].int64_list.value))
      fast["next_sentence_labels"].append(
          ex["next_sentence_labels"].int64_list.value[0])
      fast["masked_lm_weights"].append(sum(ex["masked_lm_weights"].float_list.value))
  n_ref = len(ref["input_ids"])
  assert abs(len(fast["input_mask"]) - n_ref) / n_ref < 0.02
  for key, ref_val in (("input_mask", ref["input_mask"].sum(1).mean()),
                       ("next_sentence_labels", ref["next_sentence_labels"].mean()),
                       ("masked_lm_weights", ref["masked_lm_weights"].sum(1).mean())):
    got = np.mean(fast[key])
    assert abs(got - ref_val) / ref_val < 0.03, (key, got, ref_val)


def test_reference_engine_writes_round_robin(tmp_path, vocab_file,
                                             english_corpus):
  cfg = _cfg(vocab_file)
  files = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
  meta = job.generate(cfg, [english_corpus], job.Outputs(output_file=tuple(files)),
                      engine="reference")
  tok = tokenization.load_tokenizer(vocab_file)
  ref = reference.reference_examples([english_corpus], cfg, tok,
                                     pipeline.masking_spec(cfg, tok))
  got = [list(job.writer.read_records(f)) for f in files]
  assert got[0] == ref[0::2] and got[1] == ref[1::2]
  with open(tmp_path / "a.metadata.json") as f:  # not matched by a.tfrecord*
    assert json.load(f)["engine"] == "reference"
  assert meta["splits"]["train"]["instances"] == len(ref)


def test_remote_paths_through_tf_gfile(vocab_file, english_corpus):
  """Inputs and outputs with a scheme (gs://, …) go through tf.io.gfile; TF's
  in-memory ram:// file system stands in for a bucket."""
  with open(english_corpus, "rb") as f:
    data = f.read()[:80_000]
  tf.io.gfile.makedirs("ram://bucket/in")
  with tf.io.gfile.GFile("ram://bucket/in/corpus.txt", "wb") as f:
    f.write(data)
  files = job.corpus.expand_inputs("ram://bucket/in/*.txt")
  cfg = _cfg(vocab_file)
  meta = job.generate(cfg, files, job.Outputs(output_dir="ram://bucket/out",
                                              num_shards=2, unit_mb=0.03))
  names = sorted(tf.io.gfile.listdir("ram://bucket/out"))
  assert names == ["metadata.json", "train-00000-of-00002.tfrecord",
                   "train-00001-of-00002.tfrecord"]
  n = sum(1 for _ in tf.data.TFRecordDataset(
      ["ram://bucket/out/" + x for x in names[1:]]))
  assert n == meta["splits"]["train"]["instances"] > 0
