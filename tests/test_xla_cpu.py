"""`config.cpu_dots`: which XLA:CPU matmul library the jitted steps use, and
the per-machine probe that keeps `auto` from crashing the process."""

import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from bert_jax import models
from bert_jax import xla_cpu
from bert_jax import xla_cpu_probe
import tiny

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def verdict(monkeypatch):
  """Sets what the probe reports, without running it."""
  def set_verdict(ok: bool):
    result = {"ok": ok, "reason": "passed" if ok else "signal SIGILL",
              "cpu": "test CPU"}
    monkeypatch.setattr(xla_cpu, "probe", lambda: result)
  return set_verdict


def test_choice_platform_size_and_probe_decide_the_options(verdict):
  verdict(True)
  assert xla_cpu.compiler_options("auto", 768, "cpu") == xla_cpu.ONEDNN_DOTS
  assert xla_cpu.compiler_options("auto", 256, "cpu") == xla_cpu.ONEDNN_DOTS
  assert xla_cpu.compiler_options("auto", 128, "cpu") is None
  assert xla_cpu.compiler_options("onednn", 128, "cpu") == xla_cpu.ONEDNN_DOTS
  assert xla_cpu.compiler_options("ynn", 768, "cpu") is None
  for platform in ("gpu", "tpu"):
    assert xla_cpu.compiler_options("onednn", 768, platform) is None
  with pytest.raises(ValueError, match="config.cpu_dots='mkl'"):
    xla_cpu.compiler_options("mkl", 768, "gpu")
  verdict(False)  # where oneDNN crashes: auto falls back, onednn is refused
  assert xla_cpu.compiler_options("auto", 768, "cpu") is None
  with pytest.raises(xla_cpu.OneDnnUnavailable,
                     match=r"config.cpu_dots=onednn: .*SIGILL.*auto or ynn"):
    xla_cpu.compiler_options("onednn", 768, "cpu")


def test_probe_runs_once_per_machine_and_reads_a_crash(monkeypatch, tmp_path):
  monkeypatch.setenv("BERT_JAX_CACHE_DIR", str(tmp_path))
  monkeypatch.delenv("BERT_JAX_IN_ONEDNN_PROBE", raising=False)
  calls = []

  def crashed(cmd, **kwargs):
    calls.append(cmd)
    return subprocess.CompletedProcess(cmd, -4, "", "partition compile failed")

  monkeypatch.setattr(subprocess, "run", crashed)
  xla_cpu.probe.cache_clear()
  try:
    got = xla_cpu.probe()
    assert not got["ok"] and "SIGILL" in got["reason"], got
    assert "partition compile failed" in got["reason"]
    assert calls == [[sys.executable, "-m", "bert_jax.xla_cpu_probe",
                      "onednn"]]
    assert json.loads(pathlib.Path(xla_cpu.cache_path()).read_text()) == got
    xla_cpu.probe.cache_clear()  # a new process: the cached verdict, no child
    assert xla_cpu.probe() == got and len(calls) == 1
  finally:
    xla_cpu.probe.cache_clear()


def test_probe_computations_run(monkeypatch):
  """The probe's own code (the project's step builders at hidden 256) runs:
  with XLA's default dots it must pass, or oneDNN would be judged broken on
  every machine after an API change."""
  monkeypatch.setattr(xla_cpu_probe, "SHAPES", ((256, 4),))
  xla_cpu_probe.run("ynn")


def test_onednn_dots_take_effect_and_compute_the_same_gradients():
  if not xla_cpu.probe()["ok"]:
    pytest.skip(f"oneDNN dots fail on this CPU: {xla_cpu.probe()['reason']}")
  cfg = tiny.model(hidden_size=64, max_position_embeddings=16)
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 97, (4, 16)).astype(np.int32)
  mask, seg = np.ones_like(ids), np.zeros_like(ids)
  pos = np.tile(np.arange(1, 4, dtype=np.int32), (4, 1))
  model = models.BertForPreTraining(cfg)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), ids, mask, seg,
                               pos)["params"])

  def loss(p):
    mlm, nsp = model.apply({"params": p}, ids, mask, seg, pos,
                           deterministic=True)
    return (mlm ** 2).mean() + (nsp ** 2).mean()

  grads = {}
  for choice in ("ynn", "onednn"):
    opts = xla_cpu.compiler_options(choice, cfg.hidden_size, "cpu")
    step = jax.jit(jax.value_and_grad(loss), compiler_options=opts)
    hlo = step.lower(params).compile().as_text()
    # The options must reach XLA (a renamed flag would be ignored silently).
    assert ("__onednn_fusion" in hlo) == (choice == "onednn"), choice
    grads[choice] = step(params)
  for a, b in zip(jax.tree_util.tree_leaves(grads["ynn"]),
                  jax.tree_util.tree_leaves(grads["onednn"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# Pretraining (train + eval steps), fine-tuning (train step + predict) and
# feature extraction of a hidden-256 BERT, through the CLIs, per choice.
_JOB = r'''
import json, os, subprocess, sys
choice, vocab, corpus, root = sys.argv[1:]
run = lambda *a: subprocess.run([sys.executable, "-m", *a], capture_output=True,
                                text=True)
def report(name, p):
  print(json.dumps({"step": name, "rc": p.returncode,
                    "err": p.stderr[-1500:]}), flush=True)
  if p.returncode: sys.exit(0)
if not os.path.exists("data/metadata.json"):
  report("data", run("data_prep.create_pretraining_data",
      f"--input_file={corpus}", f"--vocab_file={vocab}", "--output_dir=data",
      "--max_seq_length=32", "--max_predictions_per_seq=5",
      "--dupe_factor=1", "--eval_fraction=0.05"))
  os.makedirs("task")
  with open("task/train.tsv", "w") as f:
    f.write("sentence\tlabel\n" + "".join(
        f"{'good fine' if i % 2 else 'bad awful'} {i}\t{i % 2}\n"
        for i in range(16)))
  with open("task/dev.tsv", "w") as f:
    f.write("sentence\tlabel\ngood\t1\nbad\t0\n")
  with open("in.txt", "w") as f:
    f.write("hello world\nthe cat ||| sat down\n")
m = "--config.model."
report("train+eval", run("bert_jax.main", f"--config={root}/configs/bert.py:tiny",
    f"--workdir=run_{choice}", f"--config.cpu_dots={choice}",
    f"{m}hidden_size=256", f"{m}num_hidden_layers=1",
    f"{m}num_attention_heads=4", f"{m}intermediate_size=512",
    "--config.phase1.train_files=data/train-*",
    "--config.phase1.eval_files=data/eval-*",
    "--config.phase1.max_seq_length=32",
    "--config.phase1.max_predictions_per_seq=5",
    "--config.phase1.global_batch_size=8", "--config.phase1.num_steps=2",
    "--config.phase2.num_steps=0", "--config.eval_batch_size=8",
    "--config.eval_steps=1", "--config.checkpoint.async_save=False"))
report("finetune", run("bert_jax.finetune", f"--config.init_checkpoint=run_{choice}",
    "--config.task_dir=task", f"--config.output_dir=ft_{choice}",
    "--config.text_a=sentence", "--config.label=label", "--config.batch_size=8",
    "--config.max_seq_length=16", "--config.num_epochs=1",
    f"--config.cpu_dots={choice}"))
report("extract_features", run("bert_jax.extract_features",
    f"--workdir=run_{choice}", "--input_file=in.txt",
    f"--output_file=f_{choice}.jsonl", "--layers=-1", "--max_seq_length=16",
    f"--cpu_dots={choice}"))
'''


def test_every_jitted_job_survives_each_choice_at_hidden_256(
    tmp_path, vocab_file, english_corpus):
  """A crash like XLA's oneDNN SIGILL fails here, not in a user's run: `auto`
  and `ynn` must train, evaluate, fine-tune and extract; `onednn` must do the
  same where the probe passed (there `auto` compiles as `onednn`, so one run
  covers both) and be refused by name where it failed."""
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)  # one device, as a user's CPU run
  onednn_ok = xla_cpu.probe()["ok"]
  if not onednn_ok:  # then auto compiles exactly as ynn: run it once
    assert xla_cpu.compiler_options("auto", 256, "cpu") is None
  else:  # then auto compiles exactly as onednn at hidden 256: run that once
    assert xla_cpu.compiler_options("auto", 256, "cpu") == (
        xla_cpu.compiler_options("onednn", 256, "cpu"))
  for choice in ("auto",) + (("ynn",) if onednn_ok else ("onednn",)):
    proc = subprocess.run(
        [sys.executable, "-c", _JOB, choice, vocab_file, english_corpus,
         str(ROOT)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        check=False)
    assert proc.returncode == 0, (choice, proc.returncode, proc.stderr[-3000:])
    steps = [json.loads(l) for l in proc.stdout.splitlines()
             if l.startswith("{")]
    failed = [s for s in steps if s["rc"]]
    if choice == "onednn" and not onednn_ok:
      assert [s["step"] for s in failed] == ["train+eval"], steps
      assert "config.cpu_dots=onednn" in failed[0]["err"], failed[0]["err"]
      continue
    assert not failed, (choice, failed)
    names = [s["step"] for s in steps]
    assert names[-3:] == ["train+eval", "finetune", "extract_features"], names
    assert (tmp_path / f"f_{choice}.jsonl").read_text().count("\n") == 2
    assert (tmp_path / f"ft_{choice}" / "predictions.jsonl").exists()
