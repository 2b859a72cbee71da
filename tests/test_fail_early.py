"""Fail early, speak plainly: problems found before the first step, resume
that checks its config, one-line usage errors, the run's closing summary."""

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from bert_jax import checkpointing
from bert_jax import input_pipeline
from bert_jax import preflight
from bert_jax import settings
from bert_jax import summary
from bert_jax import train
from bert_jax.downstream import tasks
from data_prep import job
from data_prep import pipeline
from data_prep import schema
from data_prep import tokenization
import tiny

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _two_phases(shards):
  c = tiny.config(os.path.join(shards, "train-*"), 2)
  c.phase2.update(train_files=os.path.join(shards, "train-*"), eval_files="",
                  max_seq_length=32, max_predictions_per_seq=5,
                  global_batch_size=8, num_steps=2, warmup_steps=1)
  return c


@pytest.mark.parametrize("change,error,match", [
    (lambda c: c.phase2.update(train_files=""), input_pipeline.DataError,
     r"phase2\.train_files is not set"),
    (lambda c: c.phase2.update(train_files="nowhere/train-*"),
     input_pipeline.DataError, r"phase2\.train_files: No TFRecord files match "
     r"'/.*/nowhere/train-\*'"),
    (lambda c: (c.model.update(max_position_embeddings=64),
                c.phase2.update(max_seq_length=64)), input_pipeline.DataError,
     r"phase2\.train_files: .*max_seq_length is 32 in the data, 64"),
    (lambda c: c.model.update(vocab_size=40000), settings.ConfigError,
     r"vocabulary has 30522 entries but model\.vocab_size=40000; set "
     r"--config\.model\.vocab_size=30522"),
    (lambda c: c.update(eval_batch_size=4096), input_pipeline.DataError,
     r"phase1\.eval_files: \d+ examples .* fewer than one batch "
     r"\(eval_batch_size=4096\)"),
], ids=["phase2_unset", "phase2_missing", "phase2_shape", "vocab", "eval"])
def test_problems_of_any_phase_are_refused_before_the_first_step(
    tiny_shards, tmp_path, change, error, match):
  c = _two_phases(tiny_shards)
  c.phase1.eval_files = os.path.join(tiny_shards, "eval-*")
  change(c)
  with pytest.raises(error, match=match):
    train.train_and_evaluate(c, str(tmp_path / "w"))
  assert not (tmp_path / "w" / "checkpoints").exists()  # nothing trained


def test_an_unwritable_workdir_is_named(tiny_shards, tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(OSError, match=r"--workdir=.*file/w is not writable"):
    train.train_and_evaluate(_two_phases(tiny_shards), str(tmp_path / "file/w"))


def test_files_metadata_does_not_list_are_warned_and_counted(
    tiny_shards, tmp_path, monkeypatch):
  data = tmp_path / "data"
  shutil.copytree(tiny_shards, data)
  shutil.copy(data / "train-00000-of-00002.tfrecord",
              data / "train-00000-of-00004.tfrecord")  # an earlier run's
  warned = []
  monkeypatch.setattr(preflight.logging, "warning",
                      lambda msg, *a: warned.append(msg % a))
  found = preflight.check(settings.read(tiny.config(f"{data}/train-*", 1)),
                          str(tmp_path / "w"))
  f = found["phase1.train_files"]
  assert len(f.files) == 3 and f.vocab_size == 30522
  meta = json.loads((data / "metadata.json").read_text())
  assert f.examples == meta["splits"]["train"]["instances"]  # listed ones
  assert len(warned) == 1 and "train-00000-of-00004.tfrecord" in warned[0]


def test_resume_refuses_what_may_not_change_and_logs_the_rest():
  saved = json.loads(settings.read(tiny.config("d/train-*", 10)).config_json)
  c = tiny.config("d/train-*", 14)  # extending the phase: allowed
  c.eval_every, c.model.dtype = 5, "bfloat16"
  changed = settings.resume_changes(saved, settings.read(c), 0, 10)
  assert changed == {"eval_every": (0, 5), "model.dtype": ("float32",
                                                           "bfloat16"),
                     "phase1.num_steps": (10, 14)}
  c = tiny.config("d/train-*", 10)
  c.model.vocab_size, c.data_seed, c.optimizer.name = 4096, 3, "adamw"
  with pytest.raises(settings.ConfigError) as e:
    settings.resume_changes(saved, settings.read(c), 0, 10)
  for field in ("model.vocab_size was 30522, now 4096", "data_seed was -1, "
                "now 3", "optimizer.name was 'lamb', now 'adamw'"):
    assert field in str(e.value)
  c = tiny.config("d/train-*", 8)  # shorter than the checkpoint
  with pytest.raises(settings.ConfigError,
                     match=r"phase1\.num_steps was 10, now 8 \(the run is 10 "
                     r"steps into phase1\)"):
    settings.resume_changes(saved, settings.read(c), 0, 10)
  c = _two_phases("d")
  c.phase1.num_steps = 3  # the run is in phase 2: phase 1 is done
  saved2 = json.loads(settings.read(_two_phases("d")).config_json)
  with pytest.raises(settings.ConfigError,
                     match=r"phase1\.num_steps was 2, now 3 \(that phase is "
                     r"finished\)"):
    settings.resume_changes(saved2, settings.read(c), 1, 1)


def _cli(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", *args], cwd=cwd, text=True,
                        capture_output=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_usage_errors_are_one_line(tmp_path):
  p = _cli("bert_jax.main", "--config=configs/bert.py:tiny",
           "--config.phase1.lerning_rate=1", f"--workdir={tmp_path}")
  assert p.returncode == 2
  assert p.stderr.strip().splitlines() == [
      "python -m bert_jax.main: error: --config.phase1.lerning_rate: no such "
      "field; did you mean --config.phase1.learning_rate?"]
  p = _cli("bert_jax.main", "--config=configs/nope.py", f"--workdir={tmp_path}")
  assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
  assert "--config=configs/nope.py: no such file" in p.stderr
  assert "bert, demo, fast, finetune, mlperf, modern, modernbert, multiberts" in p.stderr


def test_recipes_resolve_from_anywhere_and_data_errors_are_one_line(tmp_path):
  """`--config=bert:tiny` from a directory without configs/ finds the
  installed recipe; the missing data is then one line, exit code 1."""
  p = _cli("bert_jax.main", "--config=bert:tiny", f"--workdir={tmp_path}/w",
           cwd=tmp_path)
  assert p.returncode == 1, p.stderr[-2000:]
  last = p.stderr.strip().splitlines()[-1]
  assert last.startswith("python -m bert_jax.main: error: phase1.train_files "
                         "is not set")
  assert "Traceback" not in p.stderr


def test_data_prep_refuses_stale_shards_unless_overwrite(vocab_file,
                                                         english_lines,
                                                         tmp_path):
  corpus = tmp_path / "c.txt"
  corpus.write_text("\n".join(english_lines[:300]) + "\n")
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=32,
                            max_predictions_per_seq=5, dupe_factor=1)
  out = str(tmp_path / "out")
  job.generate(cfg, [str(corpus)], job.Outputs(output_dir=out, num_shards=3))
  fewer = job.Outputs(output_dir=out, num_shards=2)
  with pytest.raises(job.FlagError, match=r"holds 3 shard\(s\) of an earlier "
                     r"run .*--overwrite"):
    job.generate(cfg, [str(corpus)], fewer)
  job.generate(cfg, [str(corpus)], job.Outputs(output_dir=out, num_shards=2,
                                               overwrite=True))
  assert sorted(p.name for p in pathlib.Path(out).glob("train-*")) == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  # --output_file=x.tfrecord: a sidecar no x.tfrecord* glob matches.
  one = job.Outputs(output_file=(str(tmp_path / "x.tfrecord"),))
  job.generate(cfg, [str(corpus)], one)
  assert [p.name for p in tmp_path.glob("x.tfrecord*")] == ["x.tfrecord"]
  assert (tmp_path / "x.metadata.json").exists()
  assert schema.sidecar_names(str(tmp_path / "x.tfrecord"))[0] == str(
      tmp_path / "x.metadata.json")


def test_summary_puts_nsp_beside_its_majority_baseline():
  ev = {"eval_mlm_accuracy": 0.1432, "eval_mlm_loss": 5.21,
        "eval_nsp_accuracy": 0.630, "eval_nsp_majority": 0.633,
        "eval_examples": 640.0}
  out = summary.lines({"eval_by_phase": {"phase1": ev}}, "/r", 660)
  assert out[0] == ("phase1: held-out MLM accuracy 0.1432 (loss 5.210), NSP "
                    "accuracy 0.630 against 0.633 for always guessing the "
                    "commoner label (NSP has learned nothing yet), 640 "
                    "examples.")
  assert out[1] == "Checkpoint: /r/checkpoints/660"
  assert "export_hf --workdir=/r" in out[2] and "--heads=mlm" in out[2]
  ev["eval_nsp_accuracy"] = 0.9
  assert "learned nothing" not in summary.lines(
      {"eval_by_phase": {"phase1": ev}}, "/r", 660)[0]


def test_orbax_info_lines_are_off_unless_verbose():
  quiet = checkpointing._QuietOrbax()  # pylint: disable=protected-access
  rec = lambda level, path, msg: logging.LogRecord(
      "absl", level, path, 1, msg, (), None)
  orbax = os.path.join("", "site-packages", "orbax", "checkpoint", "x.py")
  assert not quiet.filter(rec(logging.INFO, orbax, "Saving item"))
  assert not quiet.filter(rec(logging.WARNING, orbax,
                              "Given directory is read only=/x"))
  assert quiet.filter(rec(logging.WARNING, orbax, "something else"))
  assert quiet.filter(rec(logging.INFO, "/src/bert_jax/train.py", "step 1"))


def test_an_empty_second_segment_makes_a_single_as_google(vocab_file):
  tok = tokenization.load_tokenizer(vocab_file, True)
  rows, segs = tasks.featurize([("hello world", "\u200b"),
                                ("hello world", None)], tok, 8)
  cls, sep = tok.cls_id, tok.sep_id
  assert rows[0] == rows[1] == [cls, *list(tok.encode(["hello world"])[0]),
                                sep]
  assert segs[0] == [0] * 4
  # A single keeps max-2 tokens, not the pair's max-3.
  long = " ".join(["hello"] * 10)
  rows, _ = tasks.featurize([(long, "\u200b")], tok, 8)
  assert len(rows[0]) == 8


def test_ctrl_c_asks_to_stop_and_a_second_aborts(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  before = signal.getsignal(signal.SIGINT)
  ckpt = checkpointing.Checkpointer(str(tmp_path), async_save=False)
  with ckpt.stop_on_signals():
    os.kill(os.getpid(), signal.SIGINT)
    assert ckpt.should_stop(1)  # saved and stopped after this step
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  ckpt.close()
  assert signal.getsignal(signal.SIGINT) is before


def test_data_prep_errors_are_one_line_cause_first(tmp_path):
  p = _cli("data_prep.create_pretraining_data",
           f"--input_file={tmp_path}/none.txt", f"--output_dir={tmp_path}/o")
  assert p.returncode == 1
  lines = p.stderr.strip().splitlines()
  assert lines[-1].startswith("python -m data_prep.create_pretraining_data: "
                              f"error: --input_file: '{tmp_path}/none.txt' "
                              "matches no file")
  assert len(lines) <= 2 and "Traceback" not in p.stderr
  p = _cli("data_prep.create_pretraining_data", "--num_shard=3")
  assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
  assert "Unknown command line flag 'num_shard'" in p.stderr
