"""`python -m data_prep.beam_pipeline` writes the local path's shards.

The pipelines run on the FnApiRunner in memory with one worker: that is the
engine Beam's DirectRunner runs batch pipelines on when it does not use Prism
(whose binary it would try to download); naming it keeps the tests offline
and fast.
"""

import json
import logging
import os
import re
import subprocess
import sys

import pytest

beam = pytest.importorskip(
    "apache_beam", reason="Apache Beam is not installed: "
    "pip install 'apache-beam>=2.60,<3' (or bert_jax[beam]).")

from data_prep import beam_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_prep import corpus  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_prep import job  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_prep import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position

BEAM_ARGS = ["--runner=FnApiRunner", "--direct_num_workers=1",
             "--direct_running_mode=in_memory"]
# Durations and where it ran; everything else must be equal.
TIMES = ("created", "seconds", "timing", "workers", "runner")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, english_corpus):
  """About 100 KB of whole documents of the English corpus."""
  with open(english_corpus, encoding="utf-8") as f:
    docs = [d.strip() for d in f.read().split("\n\n") if d.strip()]
  out, size = [], 0
  for d in docs:
    if size > 100_000:
      break
    out.append(d)
    size += len(d.encode()) + 2
  path = tmp_path_factory.mktemp("beam_corpus") / "small.txt"
  path.write_text("\n\n".join(out) + "\n", encoding="utf-8")
  return str(path)


def _cfg(vocab_file, **kw):
  base = dict(vocab_file=vocab_file, dupe_factor=2, pool_tokens=20_000,
              eval_fraction=0.2)
  base.update(kw)
  return pipeline.PrepConfig(**base)


def _outputs(out):
  return job.Outputs(output_dir=str(out), num_shards=3, num_eval_shards=2,
                     unit_mb=0.02)


def _files(out):
  return {f: open(os.path.join(out, f), "rb").read()
          for f in sorted(os.listdir(out)) if f.endswith(".tfrecord")}


def _comparable(meta):
  meta = {k: v for k, v in meta.items() if k not in TIMES}
  meta["stats"] = {k: v for k, v in meta["stats"].items()
                   if k != "unit_seconds"}
  return meta


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, vocab_file, small_corpus):
  """The local multi-process path's shards and metadata."""
  out = tmp_path_factory.mktemp("local") / "data"
  job.generate(_cfg(vocab_file), [small_corpus], _outputs(out), workers=2)
  with open(out / "metadata.json") as f:
    return _files(out), json.load(f)


def test_same_shards_and_metadata_as_local(tmp_path, vocab_file, small_corpus,
                                           local_run, caplog):
  want_files, want_meta = local_run
  caplog.set_level(logging.INFO)
  out = tmp_path / "beam"
  meta = beam_pipeline.generate(_cfg(vocab_file), [small_corpus],
                                _outputs(out), BEAM_ARGS)
  assert sorted(os.listdir(out)) == sorted([*want_files, "metadata.json"])
  assert list(want_files) == [
      "eval-00000-of-00002.tfrecord", "eval-00001-of-00002.tfrecord",
      "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
      "train-00002-of-00003.tfrecord"]
  got_files = _files(out)
  for name, data in want_files.items():
    assert got_files[name] == data, name  # byte for byte, record order too
  with open(out / "metadata.json") as f:
    on_disk = json.load(f)
  assert on_disk == meta
  assert _comparable(on_disk) == _comparable(want_meta)
  assert meta["runner"] == "beam:FnApiRunner"
  for split in ("train", "eval"):
    assert meta["splits"][split]["instances"] > 0
    assert len(meta["splits"][split]["shards"]) == (3 if split == "train"
                                                    else 2)
  assert len(meta["stats"]["unit_seconds"]) == 5  # 5 work units
  # Progress: counters and a line per shard written.
  log = caplog.text
  assert f"counter instances_train = {meta['splits']['train']['instances']}" in log
  assert "counter units_done = 5" in log
  for name in want_files:
    assert f"{name}: " in log


def test_cli_writes_the_same_shards(tmp_path, vocab_file, small_corpus,
                                    local_run):
  """absl flags and Beam options on one command line (`--runner X` too)."""
  want_files, _ = local_run
  out = tmp_path / "cli"
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.beam_pipeline",
       f"--input_file={small_corpus}", f"--vocab_file={vocab_file}",
       f"--output_dir={out}", "--num_shards=3", "--num_eval_shards=2",
       "--unit_mb=0.02", "--dupe_factor=2", "--pool_tokens=20000",
       "--eval_fraction=0.2", "--runner", "FnApiRunner",
       "--direct_num_workers=1"],
      capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _files(out) == want_files
  assert json.loads(proc.stdout)["splits"]["train"]["instances"] > 0


def test_impossible_flag_fails_before_running(tmp_path, vocab_file,
                                              small_corpus):
  with pytest.raises(job.FlagError, match="--max_predictions_per_seq=126"):
    beam_pipeline.generate(_cfg(vocab_file, max_predictions_per_seq=126),
                           [small_corpus], _outputs(tmp_path / "o"), BEAM_ARGS)
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,message", [
    ("--dupe_factr=3", "Unknown flag --dupe_factr: did you mean --dupe_factor?"),
    ("--engine=reference", "Beam runs the default fast engine only"),
    ("--max_seq_length=4", "--max_seq_length=4: needs >= 5"),
])
def test_cli_bad_flags(tmp_path, vocab_file, small_corpus, flag, message):
  out = tmp_path / "bad"
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.beam_pipeline",
       f"--input_file={small_corpus}", f"--vocab_file={vocab_file}",
       f"--output_dir={out}", flag, "--runner=FnApiRunner"],
      capture_output=True, text=True, check=False)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert not out.exists() or not list(out.iterdir())


def test_failed_pipeline_leaves_nothing_final_and_rerun_resumes(
    tmp_path, vocab_file, small_corpus, local_run, monkeypatch, caplog):
  want_files, _ = local_run
  caplog.set_level(logging.INFO)
  out = tmp_path / "killed"
  real = pipeline.unit_records

  def dying(unit, index, *args, **kwargs):
    if index == 3:
      raise RuntimeError("worker lost")
    return real(unit, index, *args, **kwargs)

  monkeypatch.setattr(pipeline, "unit_records", dying)
  with pytest.raises(Exception, match="worker lost"):
    beam_pipeline.generate(_cfg(vocab_file), [small_corpus], _outputs(out),
                           BEAM_ARGS)
  # No shard, no metadata: only the hidden parts directory.
  names = os.listdir(out)
  assert len(names) == 1 and names[0].startswith(".parts-")
  parts = os.listdir(out / names[0])
  assert not [f for f in parts if ".tmp-" in f]  # failed unit: no partial
  finished = len([f for f in parts if f.endswith(".json")])
  assert "unit-00003.json" not in parts
  monkeypatch.setattr(pipeline, "unit_records", real)
  caplog.clear()
  beam_pipeline.generate(_cfg(vocab_file), [small_corpus], _outputs(out),
                         BEAM_ARGS)
  # Units finished before the failure (which ones depends on the order the
  # runner picked) are reused, the others run now.
  counts = dict(re.findall(r"counter (units_\w+) = (\d+)", caplog.text))
  assert int(counts.get("units_reused", 0)) == finished
  assert int(counts.get("units_done", 0)) == 5 - finished
  assert _files(out) == want_files
  assert sorted(os.listdir(out)) == sorted([*want_files, "metadata.json"])


def test_empty_corpus_fails_before_any_shard(tmp_path, vocab_file):
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n   \n")
  out = tmp_path / "out"
  with pytest.raises(corpus.InputError, match="Empty corpus"):
    beam_pipeline.generate(_cfg(vocab_file), [str(empty)],
                           job.Outputs(output_dir=str(out)), BEAM_ARGS)
  assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []


def test_remote_paths_through_tf_gfile(vocab_file, small_corpus, local_run):
  """Inputs and outputs with a scheme go through tf.io.gfile (TF's in-memory
  ram:// file system stands in for a bucket)."""
  tf = pytest.importorskip("tensorflow")
  want_files, _ = local_run
  with open(small_corpus, "rb") as f:
    data = f.read()
  tf.io.gfile.makedirs("ram://beam/in")
  with tf.io.gfile.GFile("ram://beam/in/small.txt", "wb") as f:
    f.write(data)
  files = corpus.expand_inputs("ram://beam/in/*.txt")
  meta = beam_pipeline.generate(_cfg(vocab_file), files,
                                _outputs("ram://beam/out"), BEAM_ARGS)
  names = sorted(tf.io.gfile.listdir("ram://beam/out"))
  assert names == sorted([*want_files, "metadata.json"])
  for name, want in want_files.items():
    with tf.io.gfile.GFile(f"ram://beam/out/{name}", "rb") as f:
      assert f.read() == want, name
  assert meta["inputs"] == ["ram://beam/in/small.txt"]
