"""`finetune`: task files, metrics, errors, short fine-tunes of a tiny BERT."""

import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bert_jax import checkpointing
from bert_jax import models
from bert_jax import runs
from bert_jax.conversion import interop
from bert_jax.downstream import finetune
from bert_jax.downstream import tasks
from configs import bert as bert_config
from configs import finetune as finetune_recipe

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILLER = ("the movie was a story about an actor and his family in the city "
          "with music from the old days of this small town").split()
PRETRAIN_SEED = 7


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, vocab_file) -> str:
  """A random tiny BERT saved as `bert_jax.convert import_*` does, but with
  a training run's metadata (config seed 7)."""
  workdir = tmp_path_factory.mktemp("tiny_bert")
  fields = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=64)
  # Random weights straight from the template's shapes (no init compile).
  rng = np.random.default_rng(0)
  flat = {}
  for path, shape in interop.template(models.BertConfig(**fields)).items():
    if path.endswith("LayerNorm/scale"):
      flat[path] = np.ones(shape.shape, np.float32)
    elif path.endswith("bias"):
      flat[path] = np.zeros(shape.shape, np.float32)
    else:
      flat[path] = np.clip(rng.normal(size=shape.shape), -2, 2).astype(
          np.float32) * 0.02
  params = interop.unflatten(flat)
  shutil.copy(vocab_file, workdir / "vocab.txt")
  config = bert_config.get_config("tiny")
  config.model.update(fields)
  config.seed = PRETRAIN_SEED
  meta = runs.RunMeta(kind="training", config=config.to_json(),
                      vocab_file="vocab.txt").to_json()
  ckpt = checkpointing.Checkpointer(str(workdir), async_save=False)
  ckpt.save(0, {"params": params}, meta, force=True)
  ckpt.wait()
  ckpt.close()
  return str(workdir)


def _sentiment(rng, n):
  """Label = whether 'good' or 'bad' appears among filler words."""
  out = []
  for _ in range(n):
    words = list(rng.choice(FILLER, size=rng.integers(0, 3)))
    label = rng.choice(["pos", "neg"])
    words.insert(rng.integers(0, len(words) + 1),
                 "good" if label == "pos" else "bad")
    out.append((" ".join(words), label))
  return out


def _write_tsv(path, header, rows):
  lines = (["\t".join(header)] if header else []) + [
      "\t".join(str(c) for c in r) for r in rows]
  pathlib.Path(path).write_text("\n".join(lines) + "\n")


def _write_jsonl(path, rows):
  pathlib.Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _config(checkpoint, task_dir, output_dir, **kw):
  base = dict(init_checkpoint=checkpoint, task_dir=str(task_dir),
              output_dir=str(output_dir), max_seq_length=32, batch_size=16,
              learning_rate=1e-3, num_epochs=4.0, dropout=0.1)
  return {**finetune_recipe.get_config().to_dict(), **base, **kw}


def _read_jsonl(path):
  return [json.loads(l) for l in pathlib.Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def sentiment_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("sentiment")
  rng = np.random.default_rng(0)
  _write_tsv(d / "train.tsv", ["sentence", "label"], _sentiment(rng, 160))
  _write_tsv(d / "dev.tsv", ["sentence", "label"], _sentiment(rng, 50))
  return d


@pytest.fixture(scope="module")
def sentiment_run(checkpoint, sentiment_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("sentiment_out")
  return finetune.finetune(_config(checkpoint, sentiment_dir, out)), out


def test_learns_easy_task_and_writes_outputs(sentiment_run, checkpoint):
  result, out = sentiment_run
  assert result["final"]["accuracy"] >= 0.9, result["epochs"]
  assert [e["epoch"] for e in result["epochs"]] == [1, 2, 3, 4]
  assert result["steps"] == 40 and result["warmup_steps"] == 4
  preds = _read_jsonl(out / "predictions.jsonl")
  assert [p["index"] for p in preds] == list(range(50))  # 50: a padded batch
  for p in preds:
    assert set(p) == {"index", "label", "prediction", "probabilities"}
    assert p["label"] in (0, 1) and p["prediction"] in (0, 1)
    assert p["prediction"] == int(np.argmax(p["probabilities"]))
    assert abs(sum(p["probabilities"]) - 1) < 1e-9
  acc = np.mean([p["label"] == p["prediction"] for p in preds])
  assert acc == pytest.approx(result["final"]["accuracy"])
  meta = json.loads((out / "predictions.meta.json").read_text())
  assert meta == {"seed": PRETRAIN_SEED, "finetune_seed": 0,
                  "task": "sentiment0", "checkpoint": checkpoint,
                  "checkpoint_step": 0, "metric": "accuracy",
                  "labels": ["neg", "pos"]}
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["final"] == result["final"]
  assert set(metrics["final"]) == {"loss", "accuracy", "f1"}
  assert not list(out.glob(".*.tmp-*"))
  assert not (out / "test_predictions.jsonl").exists()


def test_seed_decides_predictions(checkpoint, sentiment_dir, tmp_path):
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    finetune.finetune(_config(checkpoint, sentiment_dir, tmp_path / name,
                              num_epochs=1.0, seed=seed))
  ref = (tmp_path / "a" / "predictions.jsonl").read_text()
  assert (tmp_path / "b" / "predictions.jsonl").read_text() == ref
  assert (tmp_path / "c" / "predictions.jsonl").read_text() != ref
  meta = json.loads((tmp_path / "c" / "predictions.meta.json").read_text())
  assert meta["finetune_seed"] == 1


def test_pair_task_csv_with_test_split(checkpoint, tmp_path):
  """Pairs (label: does text_b repeat text_a), CSV with quoted commas; an
  unlabeled JSONL test split gets predictions too."""
  rng = np.random.default_rng(1)

  def pairs(n):
    rows = []
    for _ in range(n):
      a = " ".join(rng.choice(FILLER, size=4))
      same = bool(rng.integers(2))
      b = a if same else " ".join(rng.choice(FILLER, size=4))
      rows.append({"first": a + ", well", "second": b + ", well",
                   "same": "yes" if same else "no"})
    return rows

  d = tmp_path / "pairs"
  d.mkdir()
  for split, n in (("train", 32), ("dev", 20)):
    with open(d / f"{split}.csv", "w", newline="") as f:
      w = csv.DictWriter(f, ["first", "second", "same"])
      w.writeheader()
      w.writerows(pairs(n))
  _write_jsonl(d / "test.jsonl", [{k: v for k, v in r.items() if k != "same"}
                                  for r in pairs(7)])
  result = finetune.finetune(_config(
      checkpoint, d, tmp_path / "out", text_a="first", text_b="second",
      label="same", num_epochs=1.0, metric="f1", seed=3))
  assert set(result["final"]) == {"loss", "f1"}
  assert result["labels"] == ["no", "yes"] and result["num_test"] == 7
  test = _read_jsonl(tmp_path / "out" / "test_predictions.jsonl")
  assert [t["index"] for t in test] == list(range(7))
  assert all("label" not in t and len(t["probabilities"]) == 2 for t in test)
  meta = json.loads((tmp_path / "out" / "predictions.meta.json").read_text())
  assert meta["metric"] == "f1" and meta["finetune_seed"] == 3


# --- readers ---------------------------------------------------------------
def test_headerless_tsv_integer_columns(tmp_path):
  """GLUE CoLA: no header, columns source/label/orig/sentence; test.tsv has
  a header `index sentence` and no labels."""
  _write_tsv(tmp_path / "train.tsv", None, [
      ("gj04", 1, "", "Our friends won't buy this analysis."),
      ("gj04", 0, "*", "They drank the pub."),
      ("gj04", 1, "", 'He said "hi", then left.')])
  _write_tsv(tmp_path / "dev.tsv", None, [("cj99", 0, "*", "The more.")])
  _write_tsv(tmp_path / "test.tsv", ["index", "sentence"],
             [(0, "Bill left."), (1, "Left Bill.")])
  task = tasks.load_task(str(tmp_path), text_a="3", label="1",
                         has_header=False, test_has_header=True,
                         test_text_a="sentence")
  assert task.train.text_a[2] == 'He said "hi", then left.'  # no quoting
  assert task.labels == ["0", "1"] and task.train.labels == [1, 0, 1]
  assert task.dev.labels == [0]
  assert task.test.text_a == ["Bill left.", "Left Bill."]
  assert task.test.labels is None and task.train.text_b is None


def test_csv_and_jsonl_readers(tmp_path):
  with open(tmp_path / "train.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerows([["id", "q1", "q2", "is_dup"],
                  [1, "What, exactly?", 'Say "what"', 1],
                  [2, "Multi\nline", "b", 0]])
  _write_jsonl(tmp_path / "dev.jsonl", [
      {"q1": "x", "q2": "y", "is_dup": 1}, {"q1": "z", "q2": "w",
                                           "is_dup": 0}])
  task = tasks.load_task(str(tmp_path), text_a="q1", text_b="q2",
                         label="is_dup", name="qqp")
  assert task.name == "qqp" and task.labels == ["0", "1"]
  assert task.train.examples() == [("What, exactly?", 'Say "what"'),
                                   ("Multi\nline", "b")]
  assert task.train.labels == [1, 0] and task.dev.labels == [1, 0]
  fixed = tasks.load_task(str(tmp_path), text_a="q1", text_b="q2",
                          label="is_dup", labels="1,0")
  assert fixed.labels == ["1", "0"] and fixed.train.labels == [0, 1]


def test_clear_errors(tmp_path):
  def task_dir(name, train, dev, ext="tsv"):
    d = tmp_path / name
    d.mkdir()
    (d / f"train.{ext}").write_text(train)
    (d / f"dev.{ext}").write_text(dev)
    return str(d)

  ok = "sentence\tlabel\nfine\ta\nok\tb\n"
  d = task_dir("missing_col", ok, "sentence\tgold\nx\ta\n")
  with pytest.raises(tasks.TaskError, match=r"dev.tsv:1: no column 'label'"):
    tasks.load_task(d, text_a="sentence")
  d = task_dir("unknown_label", ok, "sentence\tlabel\nx\ta\ny\tc\n")
  with pytest.raises(tasks.TaskError,
                     match=r"dev.tsv:3: label 'c' \(column 'label'\) is not "
                     r"one of the labels \['a', 'b'\]"):
    tasks.load_task(d, text_a="sentence")
  d = task_dir("empty", "sentence\tlabel\n\n", ok)
  with pytest.raises(tasks.TaskError, match=r"train.tsv: no examples"):
    tasks.load_task(d, text_a="sentence")
  d = task_dir("empty2", "", ok)
  with pytest.raises(tasks.TaskError, match=r"train.tsv: empty file"):
    tasks.load_task(d, text_a="sentence")
  d = task_dir("regression", "s\tscore\nx\t0.5\n",
               "s\tscore\nx\t1\ny\tabout 2\n")
  with pytest.raises(tasks.TaskError,
                     match=r"dev.tsv:3: regression target 'about 2'"):
    tasks.load_task(d, text_a="s", label="score", regression=True)
  d = task_dir("short_row", "a\t0\nb\n", "a\t0\n")
  with pytest.raises(tasks.TaskError,
                     match=r"train.tsv:2: 1 columns, but label='1' is column "
                     r"1"):
    tasks.load_task(d, text_a="0", label="1", has_header=False)
  with pytest.raises(tasks.TaskError, match=r"has no header row"):
    tasks.load_task(d, text_a="sentence", label="1", has_header=False)
  d = task_dir("jsonl", '{"t": "a", "label": 1}\n{"t": "b", "label": 0}\n',
               '{"t": "a", "label": 1}\n{"text": "b", "label": 0}\n', "jsonl")
  with pytest.raises(tasks.TaskError, match=r"dev.jsonl:2: no key 't'"):
    tasks.load_task(d, text_a="t")
  d = task_dir("one_label", "s\tlabel\nx\ta\ny\ta\n", "s\tlabel\nx\ta\n")
  with pytest.raises(tasks.TaskError, match=r"at least two"):
    tasks.load_task(d, text_a="s")
  with pytest.raises(tasks.TaskError, match=r"no train file"):
    tasks.load_task(str(tmp_path), text_a="s")


def test_config_errors(checkpoint, tmp_path):
  (tmp_path / "train.tsv").write_text("sentence\tlabel\nx\ta\ny\tb\nz\tc\n")
  (tmp_path / "dev.tsv").write_text("sentence\tlabel\nx\ta\n")
  with pytest.raises(ValueError, match=r"metric=f1 needs two labels"):
    finetune.finetune(_config(checkpoint, tmp_path, tmp_path / "o",
                              metric="f1"))
  with pytest.raises(ValueError, match=r"pearson/spearman are for regr"):
    finetune.finetune(_config(checkpoint, tmp_path, tmp_path / "o",
                              metric="pearson"))
  with pytest.raises(ValueError, match=r"Unknown config fields \['lr'\]"):
    finetune.finetune(_config(checkpoint, tmp_path, tmp_path / "o", lr=1.0))
  partial = _config(checkpoint, tmp_path, tmp_path / "o")
  del partial["seed"]
  with pytest.raises(ValueError, match=r"lacks \['seed'\]; start from "
                     r"configs/finetune.py"):
    finetune.finetune(partial)
  with pytest.raises(ValueError, match=r"multiple of the 8 local devices"):
    finetune.finetune(_config(checkpoint, tmp_path, tmp_path / "o",
                              batch_size=12))
  (tmp_path / "file").write_text("x")
  with pytest.raises(OSError, match=r"config\.output_dir=.*file/o is not "
                     r"writable"):
    finetune.finetune(_config(checkpoint, tmp_path, tmp_path / "file/o"))
  with pytest.raises(ValueError, match=r"exceeds the model's 64 positions"):
    finetune.finetune(_config(checkpoint, tmp_path, tmp_path / "o",
                              max_seq_length=128))


# --- metrics ---------------------------------------------------------------
def test_metrics_by_hand():
  y = [1, 0, 1, 1, 0, 0]
  p = [1, 0, 0, 1, 1, 0]
  # TP 2, TN 2, FP 1, FN 1.
  got = finetune.compute_metrics(["accuracy", "f1", "matthews"], y, p)
  assert got["accuracy"] == pytest.approx(4 / 6)
  assert got["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
  assert got["matthews"] == pytest.approx((2 * 2 - 1 * 1) / 9)
  x, z = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 10.0]
  got = finetune.compute_metrics(["pearson", "spearman"], x, z)
  xc, zc = np.array(x) - 2.5, np.array(z) - 4.0
  assert got["pearson"] == pytest.approx(
      (xc @ zc) / np.sqrt((xc @ xc) * (zc @ zc)))
  assert got["spearman"] == pytest.approx(0.8)  # ranks 1,3,2,4
  assert finetune.compute_metrics(["pearson"], x, [1.0] * 4) == {
      "pearson": None}
  assert finetune.metric_names("auto", True, 0) == ["pearson", "spearman"]
  assert finetune.metric_names("auto", False, 2) == ["accuracy", "f1"]
  assert finetune.metric_names("auto", False, 3) == ["accuracy"]
  assert finetune.metric_names("matthews", False, 2) == ["matthews"]


def test_pretraining_seed_from_meta():
  config = bert_config.get_config("tiny")
  config.seed = 4
  meta = runs.RunMeta.from_json
  assert meta({"config": config.to_json(), "phase": 0}).pretraining_seed() == 4
  assert meta({"config": config.to_json(),
               "imported_from": "hf"}).pretraining_seed() is None
  assert meta({"config": "{}", "kind": "training"}).pretraining_seed() is None


def test_regression_jsonl(checkpoint, tmp_path):
  """An STS-B-like task: float targets, one output, 1.5 epochs."""
  rng = np.random.default_rng(2)

  def rows(n):
    out = []
    for _ in range(n):
      k = int(rng.integers(0, 4))
      words = list(rng.choice(FILLER, size=3)) + ["good"] * k
      out.append({"text": " ".join(words), "score": k * 1.25})
    return out

  d = tmp_path / "sts"
  d.mkdir()
  _write_jsonl(d / "train.jsonl", rows(32))
  _write_jsonl(d / "dev.jsonl", rows(12))
  out = tmp_path / "out"
  result = finetune.finetune(_config(
      checkpoint, d, out, text_a="text", label="score", regression=True,
      num_epochs=1.5, seed=5))
  assert result["metric"] == "pearson" and result["steps"] == 3
  assert set(result["final"]) == {"loss", "pearson", "spearman"}
  assert [e["step"] for e in result["epochs"]] == [2, 3]
  preds = _read_jsonl(out / "predictions.jsonl")
  assert [p["index"] for p in preds] == list(range(12))
  assert all(isinstance(p["prediction"], float) and "probabilities" not in p
             for p in preds)
  assert {p["label"] for p in preds} <= {0.0, 1.25, 2.5, 3.75}
  meta = json.loads((out / "predictions.meta.json").read_text())
  assert meta == {"seed": PRETRAIN_SEED, "finetune_seed": 5, "task": "sts",
                  "checkpoint": checkpoint, "checkpoint_step": 0,
                  "metric": "pearson", "labels": None}


def test_cli_reports_task_errors(checkpoint, tmp_path):
  (tmp_path / "train.tsv").write_text("sentence\tlabel\nx\ta\n")
  proc = subprocess.run(
      [sys.executable, "-m", "bert_jax.finetune",
       f"--config.init_checkpoint={checkpoint}",
       f"--config.task_dir={tmp_path}", f"--config.output_dir={tmp_path}/o"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode != 0
  assert "no dev file (dev.tsv, dev.csv or dev.jsonl)" in proc.stderr


def test_features_default_to_the_layers_the_model_has(checkpoint, tmp_path):
  """Google's default is the last four layers; a 2-layer model gives its
  two. The output format follows the extension (or is refused)."""
  from bert_jax.downstream import features  # pylint: disable=g-import-not-at-top
  src = tmp_path / "in.txt"
  src.write_text("good movie ||| bad film\nfine\n")
  out = tmp_path / "out.jsonl"
  assert features.extract_file(checkpoint, -1, str(src), str(out), [], 16,
                               2) == 2
  first = json.loads(out.read_text().splitlines()[0])
  assert [l["index"] for l in first["features"][0]["layers"]] == [-1, -2]
  with pytest.raises(features.LayerError, match=r"x\.txt: the format follows "
                     r"the extension, \.jsonl"):
    features.extract_file(checkpoint, -1, str(src), str(tmp_path / "x.txt"),
                          [], 16, 2)
