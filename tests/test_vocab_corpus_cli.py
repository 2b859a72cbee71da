"""Vocabulary training, the harvested default corpus, TFDS input, the CLI."""

import json
import os
import subprocess
import sys

import pytest

from data_prep import build_vocab
from data_prep import default_corpus
from data_prep import job
from data_prep import pipeline
from data_prep import sentences
from data_prep import tokenization


def test_wordpiece_vocab_layout_and_use(tmp_path, english_corpus):
  path = str(tmp_path / "vocab.txt")
  n = build_vocab.train_wordpiece([english_corpus], path, vocab_size=3000)
  lines = open(path, encoding="utf-8").read().split("\n")[:-1]
  assert n == len(lines) <= 3000 and len(lines) > 2500
  assert lines[0] == "[PAD]" and lines[1] == "[unused0]"
  assert lines[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert any(l.startswith("##") for l in lines)
  assert len(set(lines)) == len(lines)
  assert all(l == l.lower() for l in lines[104:])
  tok = tokenization.load_tokenizer(path)
  ids = tok.encode(["The function returns a new array."])[0]
  assert tok.unk_id not in ids.tolist()


def test_cased_vocab_keeps_case(tmp_path, english_corpus):
  path = str(tmp_path / "cased.txt")
  build_vocab.train_wordpiece([english_corpus], path, vocab_size=2000,
                              do_lower_case=False)
  words = set(open(path, encoding="utf-8").read().split("\n"))
  assert "The" in words and "the" in words


def test_sentencepiece_model(tmp_path, english_corpus, vocab_file):
  model = build_vocab.train_sentencepiece([english_corpus],
                                          str(tmp_path / "spm"), vocab_size=800)
  tok = tokenization.load_tokenizer(model)
  assert tok.kind == "sentencepiece" and tok.pad_id == 0 and tok.unk_id == 1
  assert {tok.id_to_token[i] for i in (tok.cls_id, tok.sep_id, tok.mask_id)} == {
      "[CLS]", "[SEP]", "[MASK]"}
  ids = tok.encode(["Returns the sum of array elements."])[0]
  pieces = [tok.id_to_token[i] for i in ids]
  assert pieces[0].startswith("\u2581")
  assert tok.continuation[ids].tolist() == [not p.startswith("\u2581")
                                            for p in pieces]
  cfg = pipeline.PrepConfig(vocab_file=model, dupe_factor=1,
                            do_whole_word_mask=True)
  meta = job.generate(cfg, [english_corpus],
                      job.Outputs(output_dir=str(tmp_path / "out")))
  assert meta["vocab"]["kind"] == "sentencepiece"
  assert meta["splits"]["train"]["instances"] > 100


def test_default_corpus_is_prose():
  docs = list(default_corpus.iter_documents(max_bytes=100_000))
  assert len(docs) > 50 and all(len(d) >= 2 for d in docs)
  for sent in (s for d in docs for s in d):
    assert not sent.startswith((">>>", "..", "::"))
    assert sent[0].isupper() and sent[-1] in ".!?"
  again = list(default_corpus.iter_documents(max_bytes=100_000))
  assert again == docs  # deterministic


def test_sentence_splitter():
  assert sentences.split_sentences(
      "Dr. Smith arrived. He said \"Hi.\" Then e.g. apples fell! 3 cats? Yes."
  ) == ["Dr. Smith arrived.", "He said \"Hi.\"", "Then e.g. apples fell!",
        "3 cats?", "Yes."]
  assert sentences.split_sentences("你好。今天很好！") == ["你好。", "今天很好！"]


def test_tfds_input(tmp_path, vocab_file, english_lines):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  texts = [" ".join(english_lines[i:i + 6]) for i in range(0, 600, 6)]
  builder = tfds.dataset_builders.TfDataBuilder(
      name="bert_jax_test_text", version="1.0.0",
      split_datasets={"train": tf.data.Dataset.from_tensor_slices(
          {"text": texts})},
      features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
      data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare()
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, dupe_factor=1,
                            tfds_name="bert_jax_test_text",
                            tfds_data_dir=str(tmp_path / "tfds"))
  meta = job.generate(cfg, [], job.Outputs(output_dir=str(tmp_path / "out"),
                                           num_shards=2))
  assert meta["stats"]["documents"] == 100
  assert meta["stats"]["lines"] > 300  # split into sentences
  assert [s["instances"] > 0 for s in meta["splits"]["train"]["shards"]] == [
      True, True]
  cfg_bad = pipeline.PrepConfig(vocab_file=vocab_file, tfds_name="bert_jax_test_text",
                                tfds_data_dir=str(tmp_path / "tfds"),
                                tfds_text_key="body")
  with pytest.raises(job.corpus.InputError, match="--tfds_text_key=body"):
    job.generate(cfg_bad, [], job.Outputs(output_dir=str(tmp_path / "o2")))


def test_main_job_default_run(tmp_path):
  """The README's first command, with a smaller harvested corpus."""
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.create_pretraining_data",
       "--default_corpus_mb=0.3", "--dupe_factor=2", "--vocab_size=3000"],
      capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = tmp_path / "bert_jax_data"
  meta = json.loads((out / "metadata.json").read_text())
  assert meta["vocab"]["vocab_size"] == 3000
  assert meta["splits"]["train"]["instances"] > 1000
  assert (out / "train-00000-of-00001.tfrecord").stat().st_size > 500_000
  assert not [p for p in out.iterdir() if p.name.startswith(".parts")]


def test_cli_forked_workers_match_one_process(tmp_path, vocab_file,
                                              english_corpus):
  """Through the CLI (no TensorFlow loaded, so workers are forked), 2
  workers write exactly what 1 process writes."""
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  outputs = []
  for workers in (1, 2):
    out = tmp_path / f"w{workers}"
    proc = subprocess.run(
        [sys.executable, "-m", "data_prep.create_pretraining_data",
         f"--input_file={english_corpus}", f"--vocab_file={vocab_file}",
         f"--output_dir={out}", "--num_shards=2", "--unit_mb=0.05",
         "--dupe_factor=2", f"--num_workers={workers}"],
        capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["workers"] == workers and len(meta["stats"]["unit_seconds"]) > 4
    outputs.append([(out / s["file"]).read_bytes()
                    for s in meta["splits"]["train"]["shards"]])
  assert outputs[0] == outputs[1]


def test_shuffle_input_files_is_seeded(tmp_path, vocab_file, english_lines):
  """--shuffle_input_files mixes the corpus's files before units are cut:
  a permutation fixed by --random_seed, recorded in the metadata."""
  names = []
  for i in range(6):
    path = tmp_path / f"part-{i}.txt"
    path.write_text("\n".join(english_lines[i * 40:(i + 1) * 40]) + "\n")
    names.append(str(path))
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  order = {}
  for name, seed in (("a", 1), ("b", 1), ("c", 2)):
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, "-m", "data_prep.create_pretraining_data",
         f"--input_file={tmp_path}/part-*.txt", f"--vocab_file={vocab_file}",
         f"--output_dir={out}", "--shuffle_input_files",
         f"--random_seed={seed}", "--dupe_factor=1"],
        capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    order[name] = json.loads((out / "metadata.json").read_text())["inputs"]
  assert sorted(order["a"]) == names and order["a"] != names
  assert order["a"] == order["b"] and order["a"] != order["c"]


def test_a_vocab_size_the_corpus_cannot_meet_is_said(tmp_path, english_lines,
                                                     monkeypatch):
  small = tmp_path / "small.txt"
  small.write_text("\n".join(english_lines[:40]) + "\n")
  warned = []
  monkeypatch.setattr(build_vocab.logging, "warning",
                      lambda msg, *a: warned.append(msg % a))
  n = build_vocab.train_wordpiece([str(small)], str(tmp_path / "v.txt"),
                                  vocab_size=30522)
  assert n < 30522 and len(warned) == 1
  assert f"--vocab_size=30522: the corpus filled only {n} entries" in warned[0]
  warned.clear()
  n = build_vocab.train_wordpiece([str(small)], str(tmp_path / "w.txt"),
                                  vocab_size=110)
  assert n > 110 and len(warned) == 1
  assert f"--vocab_size=110: wrote {n} entries" in warned[0]
