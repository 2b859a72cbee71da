"""A run's held-out history (evals.jsonl, target.json) and time to target
across seeds and recipes (`bert_jax.stats.time_to_target`)."""

import json
import os

import numpy as np
import pytest

from bert_jax import history
from bert_jax.stats import time_to_target as ttt


def _entry(step, acc, per_step=16, secs=1.0):
  return {"step": step, "phase": "phase1", "examples": step * per_step,
          "train_time_s": step * secs, "eval_mlm_accuracy": acc}


def test_history_follows_the_checkpoint_it_resumes_from(tmp_path):
  d = str(tmp_path)
  log = history.History(d, None, None)
  for step, acc in ((2, 0.1), (4, 0.2), (6, 0.3)):
    log.add(_entry(step, acc))
  log.reached({"target": 0.25, "step": 6})
  evals, target = history.read(d)
  assert [e["step"] for e in evals] == [2, 4, 6] and target["step"] == 6
  # Killed after step 6's evaluation; the last checkpoint is step 4 (no
  # target yet): what step 6 wrote goes, and comes back when it is redone.
  log = history.History(d, 4, None)
  evals, target = history.read(d)
  assert [e["step"] for e in evals] == [2, 4] and target is None
  log.add(_entry(6, 0.3))
  assert [e["step"] for e in history.read(d)[0]] == [2, 4, 6]
  # A fresh start in a workdir without checkpoints keeps nothing.
  history.History(d, None, None)
  assert history.read(d) == ([], None)
  # No temporary files are left beside the records.
  assert sorted(os.listdir(d)) == [history.EVALS]


def test_history_names_a_bad_line(tmp_path):
  (tmp_path / history.EVALS).write_text('{"step": 2}\nnot json\n')
  with pytest.raises(history.HistoryError, match=r"evals.jsonl:2"):
    history.read(str(tmp_path))


def _arm(root, name, curves):
  """Workdirs root/name/seed_K with the given (step, accuracy) curves; one
  second of training per step and the seed's speed factor."""
  for seed, (factor, accs) in enumerate(curves):
    d = os.path.join(root, name, f"seed_{seed}")
    os.makedirs(d)
    log = history.History(d, None, None)
    for i, acc in enumerate(accs, 1):
      log.add(_entry(10 * i, acc, secs=factor))
  return os.path.join(root, name, "seed_*")


def test_time_to_target_intervals_and_comparison(tmp_path):
  root = str(tmp_path)
  slow = _arm(root, "slow", [(1.0, [0.1, 0.2, 0.3, 0.4]),
                             (1.2, [0.1, 0.2, 0.3, 0.4]),
                             (1.4, [0.1, 0.2, 0.3, 0.4])])
  fast = _arm(root, "fast", [(1.0, [0.2, 0.35, 0.45]),
                             (1.1, [0.2, 0.31, 0.42]),
                             (0.9, [0.1, 0.2, 0.28])])  # never at 0.3
  arms = {"slow": ttt.read_arm("slow", slow), "fast": ttt.read_arm("fast", fast)}
  rep = ttt.summarize(arms, 0.3, nboot=500, seed=0)
  s, f = rep["arms"]["slow"], rep["arms"]["fast"]
  assert s["seeds"] == [0, 1, 2] and s["reached"] == 3 and s["censored"] == 0
  # Slow reaches 0.3 at step 30 after 30, 36 and 42 s.
  assert s["train_time_s_to_target"]["mean"] == pytest.approx(36, abs=1.5)
  assert 30 <= s["train_time_s_to_target"]["low"] < 36
  assert 36 < s["train_time_s_to_target"]["high"] <= 42
  assert s["step_to_target"]["low"] == s["step_to_target"]["high"] == 30
  assert s["examples_to_target"]["mean"] == 480
  assert f["reached"] == 2 and f["censored"] == 1  # seed 2 stops at 0.28
  assert f["train_time_s_to_target"]["mean"] == pytest.approx(21, abs=1.5)
  assert [r["at_target"] is None for r in f["runs"]] == [False, False, True]
  assert s["final_mlm_accuracy"]["mean"] == pytest.approx(0.4)
  cmp = rep["comparisons"]["fast vs slow"]
  # Every resample has fast faster: P floors at 1/nboot.
  assert cmp["train_time_s_to_target"]["p"] == pytest.approx(1 / 500)
  assert cmp["train_time_s_to_target"]["high"] < 0
  assert 30 / 22 <= cmp["speedup"]["low"] < cmp["speedup"]["high"] <= 42 / 20
  assert cmp["final_mlm_accuracy"]["mean"] == pytest.approx(
      np.mean([0.45, 0.42, 0.28]) - 0.4, abs=0.01)
  text = ttt.format_report(rep)
  assert "fast: 3 seeds [0, 1, 2], 2 of 3 reached the target" in text
  assert "[over the 2 that reached it]" in text and "speed-up" in text


def test_cli_reads_the_target_plots_and_refuses_bad_input(tmp_path, capsys):
  root = str(tmp_path)
  a = _arm(root, "a", [(1.0, [0.1, 0.3]), (1.5, [0.2, 0.35])])
  b = _arm(root, "b", [(1.0, [0.3, 0.4]), (1.2, [0.31, 0.4])])
  for seed in (0, 1):  # the target the runs were trained with
    history.History(os.path.join(root, "a", f"seed_{seed}"), 20,
                    {"target": 0.3, "step": 20})
  png = os.path.join(root, "plots", "curves.png")
  rep = ttt.main([f"--runs=a={a}", f"--runs=b={b}", f"--plot={png}",
                  "--axis=examples", "--nboot=200", "--json"])
  assert rep["target"] == 0.3
  assert json.loads(capsys.readouterr().out)["arms"]["b"]["reached"] == 2
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="--target is required"):
    ttt.main([f"--runs=b={b}"])
  with pytest.raises(ValueError, match=r"--runs=c=.*matches no directory"):
    ttt.main([f"--runs=c={root}/nothing/*", "--target=0.3"])
  os.makedirs(os.path.join(root, "empty", "seed_0"))
  with pytest.raises(ValueError, match=r"has no evals.jsonl"):
    ttt.main([f"--runs=e={root}/empty/seed_*", "--target=0.3"])
  with pytest.raises(SystemExit):
    ttt.main(["--runs=nameonly", "--target=0.3"])
