"""Bad input gets a clear error or warning that names the cause."""

import os
import subprocess
import sys

import pytest

from data_prep import corpus
from data_prep import job
from data_prep import pipeline
from data_prep import tokenization


def _run(tmp_path, vocab_file, files, **kw):
  kw.setdefault("dupe_factor", 1)
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, **kw)
  return job.generate(cfg, files, job.Outputs(output_dir=str(tmp_path / "out")))


@pytest.mark.parametrize("field,value,match", [
    ("max_seq_length", 4, "--max_seq_length=4"),
    ("max_predictions_per_seq", 126, r"--max_predictions_per_seq=126.*\[1, 125\]"),
    ("max_predictions_per_seq", 0, "--max_predictions_per_seq=0"),
    ("masked_lm_prob", 0.0, "--masked_lm_prob"),
    ("dupe_factor", 0, "--dupe_factor"),
    ("eval_fraction", 1.0, "--eval_fraction"),
])
def test_impossible_flags(tmp_path, vocab_file, english_corpus, field, value,
                          match):
  with pytest.raises(job.FlagError, match=match):
    _run(tmp_path, vocab_file, [english_corpus], **{field: value})


def test_missing_input_pattern():
  with pytest.raises(corpus.InputError, match="nothing_here.*matches no file"):
    corpus.expand_inputs("/nonexistent/nothing_here*.txt")


def test_missing_vocab(tmp_path, english_corpus):
  with pytest.raises(tokenization.VocabError, match="absent.txt: no such file"):
    _run(tmp_path, str(tmp_path / "absent.txt"), [english_corpus])


def test_empty_corpus(tmp_path, vocab_file):
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n   \n\u200b\n")  # blank lines and a zero-width space
  with pytest.raises(corpus.InputError, match="Empty corpus"):
    _run(tmp_path, vocab_file, [str(empty)])
  visible = [p.name for p in (tmp_path / "out").iterdir()
             if not p.name.startswith(".")]
  assert visible == []  # no shard, no metadata


def test_invalid_utf8_is_counted_and_reported(tmp_path, vocab_file, caplog):
  path = tmp_path / "bad.txt"
  path.write_bytes(b"A fine first sentence here.\nBroken \xff\xfe bytes here.\n"
                   b"\nAnother document starts.\nIt has two lines \xc3.\n")
  meta = _run(tmp_path, vocab_file, [str(path)])
  assert meta["stats"]["invalid_utf8_lines"] == 2
  assert meta["stats"]["files_with_invalid_utf8"] == {str(path): 2}
  assert "2 line(s) with invalid UTF-8" in caplog.text
  assert meta["stats"]["documents"] == 2


def test_single_document_warns(tmp_path, vocab_file, caplog):
  path = tmp_path / "one.txt"
  path.write_text("First sentence of the only document.\n"
                  "Second sentence of it.\nThird one.\n")
  meta = _run(tmp_path, vocab_file, [str(path)])
  assert meta["stats"]["documents"] == 1
  assert "single document" in caplog.text


def test_cli_reports_usage_errors(tmp_path, vocab_file, english_corpus):
  """The CLI exits non-zero with the reason, and writes no shard."""
  out = tmp_path / "cli"
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.create_pretraining_data",
       f"--input_file={english_corpus}", f"--vocab_file={vocab_file}",
       f"--output_dir={out}", "--max_predictions_per_seq=500"],
      capture_output=True, text=True, cwd=os.getcwd(), check=False)
  assert proc.returncode != 0
  assert "--max_predictions_per_seq=500" in proc.stderr
  assert not out.exists() or not list(out.glob("*.tfrecord"))


def test_unreadable_input(tmp_path):
  (tmp_path / "adir.txt").mkdir()
  with pytest.raises(corpus.InputError, match="adir.txt is not a readable"):
    corpus.expand_inputs(str(tmp_path / "*.txt"))
