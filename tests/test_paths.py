"""Relative paths and `~` are resolved once, where they enter; URLs are not.
Files are written whole or not at all."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import checkpointing
from bert_jax import runs
from bert_jax import settings
from configs import bert as bert_config
from data_prep import fileio


def test_resolve_makes_local_paths_absolute_and_leaves_urls(monkeypatch,
                                                            tmp_path):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert fileio.resolve("data/train-*") == str(tmp_path / "data/train-*")
  assert fileio.resolve("../x") == str(tmp_path.parent / "x")
  assert fileio.resolve("~/runs/a") == str(tmp_path / "home/runs/a")
  assert fileio.resolve("gs://b/data/train-*") == "gs://b/data/train-*"
  assert fileio.resolve("") == "" and fileio.resolve(None) is None
  assert fileio.resolve_list("a/*, gs://b/c,~/d") == ",".join(
      [str(tmp_path / "a/*"), "gs://b/c", str(tmp_path / "home/d")])
  (tmp_path / "home").mkdir()
  (tmp_path / "home" / "f.txt").write_text("x")
  assert fileio.glob("~/*.txt") == [str(tmp_path / "home" / "f.txt")]


def test_trainer_config_records_absolute_paths(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  c = bert_config.get_config("tiny")
  c.phase1.train_files = "data/a-*,gs://b/c-*"
  c.phase2.eval_files = "~/held"
  c.init_from = "init/google"
  out = settings.resolve_paths(c)
  assert out.phase1.train_files == f"{tmp_path}/data/a-*,gs://b/c-*"
  assert out.phase2.eval_files == os.path.expanduser("~/held")
  assert out.init_from == str(tmp_path / "init/google")
  assert c.phase1.train_files == "data/a-*,gs://b/c-*"  # the caller's intact


def test_checkpoint_from_a_relative_workdir_restores_from_either_form(
    monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  state = {"w": jnp.arange(6.0).reshape(2, 3)}
  ckpt = checkpointing.Checkpointer("runs/rel", async_save=True)
  assert ckpt.save(3, state, {"phase": 0}, force=True)
  ckpt.wait()
  ckpt.close()
  for workdir in ("runs/rel", str(tmp_path / "runs" / "rel"),
                  "runs/../runs/rel"):
    c = checkpointing.Checkpointer(workdir, read_only=True)
    restored, meta = c.restore_arrays(3)
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert meta == {"phase": 0} and c.all_steps() == [3]
    c.close()


def test_recorded_vocab_is_found_from_another_directory(monkeypatch, tmp_path):
  """Shards record the vocab they were made with; a run trained on them finds
  it from anywhere (absolute record), or beside the shards (older relative
  records); a missing one is reported, not silently dropped."""
  data = tmp_path / "data"
  data.mkdir()
  (data / "vocab.txt").write_text("[PAD]\n")
  meta = runs.RunMeta(kind="training", config=json.dumps(
      {"phase1": {"train_files": f"{data}/train-*"}}))
  for recorded in (str(data / "vocab.txt"), "vocab.txt"):
    (data / "metadata.json").write_text(json.dumps(
        {"config": {"vocab_file": recorded, "do_lower_case": False}}))
    monkeypatch.chdir(tmp_path.parent)
    assert meta.vocab("run") == (str(data / "vocab.txt"), False)
  (data / "metadata.json").write_text(json.dumps(
      {"config": {"vocab_file": "/nowhere/vocab.txt"}}))
  (data / "vocab.txt").unlink()
  warnings = []
  monkeypatch.setattr(runs.logging, "warning",
                      lambda msg, *a: warnings.append(msg % a))
  assert meta.vocab("run") == (None, True)
  assert "vocab_file=/nowhere/vocab.txt" in warnings[0], warnings


def test_atomic_write_leaves_the_whole_file_or_nothing(tmp_path):
  path = str(tmp_path / "out.json")
  with pytest.raises(RuntimeError, match="killed"):
    with fileio.atomic_write(path) as f:
      f.write("half")
      raise RuntimeError("killed")
  assert not os.listdir(tmp_path)
  with fileio.atomic_write(path) as f:
    f.write("whole ü")
    assert os.listdir(tmp_path) == [f".out.json.tmp-{os.getpid()}"]
  assert os.listdir(tmp_path) == ["out.json"]
  with open(path, encoding="utf-8") as f:
    assert f.read() == "whole ü"
  fileio.write_atomic(path, b"\x00bytes")
  with open(path, "rb") as f:
    assert f.read() == b"\x00bytes"
  assert fileio.temporary_name("gs://b/d/x.txt", "w1") == "gs://b/d/.x.txt.tmp-w1"
