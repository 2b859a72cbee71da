"""The README's first command, `python -m bert_jax.demo`, shrunk to seconds:
from a relative working directory, it prints held-out accuracy, writes Orbax
checkpoints, and a second invocation resumes without repeating a step."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

SHRINK = ["--corpus_mb=0.25", "--config.phase1.num_steps=20",
          "--config.phase1.warmup_steps=5", "--config.phase2.num_steps=6",
          "--config.phase2.warmup_steps=2", "--config.log_every=1",
          "--config.eval_steps=2", "--config.checkpoint.save_every=10",
          "--config.checkpoint.keep_forever=((20,10),)"]


def _demo(cwd):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(
      [sys.executable, "-m", "bert_jax.demo", "--workdir=demo", *SHRINK],
      cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  steps = [int(s) for s in re.findall(r"\] step (\d+)/\d+ \(phase", proc.stderr)]
  return json.loads(proc.stdout[proc.stdout.index("{"):]), steps, proc.stderr


def test_demo_trains_reports_and_resumes(tmp_path):
  out, steps, _ = _demo(tmp_path)
  assert steps == list(range(1, 27)), steps
  for phase in ("phase1", "phase2"):
    ev = out["held_out_eval"][phase]
    assert 0 < ev["eval_mlm_accuracy"] < 1 and 0 < ev["eval_nsp_accuracy"] < 1
  checkpoints = tmp_path / "demo" / "train" / "checkpoints"
  assert out["checkpoints"] == str(checkpoints)
  assert sorted(int(p.name) for p in checkpoints.iterdir()
                if p.name.isdigit()) == [0, 10, 20, 26]
  # As if killed after phase 1's last checkpoint: the rerun trains phase 2
  # only, from step 31, and gets the same held-out result.
  shutil.rmtree(checkpoints / "26")
  again, steps, log = _demo(tmp_path)
  assert "Resumed from step 20 (phase 1)." in log
  assert steps == list(range(21, 27)), steps
  assert again["held_out_eval"] == out["held_out_eval"]
