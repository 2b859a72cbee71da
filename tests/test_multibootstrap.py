"""Multi-bootstrap statistics (bert_jax.stats): algorithm, RNG order, report,
metrics and the command line."""

import importlib.util
import itertools
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_jax.stats import cli
from bert_jax.stats import metrics
from bert_jax.stats import multibootstrap as mb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference(rows, preds, labels, score_fn, paired, sample_seeds,
              sample_examples, nboot, rng):
  """A plain re-statement of the published algorithm: seeds drawn by value."""
  base, expt = {}, {}
  for i, row in enumerate(rows):
    (expt if row["intervention"] else base).setdefault(row["seed"], []).append(i)
  common = sorted(set(base) & set(expt))
  bs, es = sorted(base), sorted(expt)
  n = len(labels)
  out = []
  for _ in range(nboot):
    if sample_seeds:
      if paired:
        b = list(rng.choice(common, size=len(common), replace=True))
        e = b
      else:
        b = list(rng.choice(bs, size=len(bs), replace=True))
        e = list(rng.choice(es, size=len(es), replace=True))
    elif paired:
      b, e = common, common
    else:
      b, e = bs, es
    if sample_examples:
      jj = rng.choice(n, size=n, replace=True)
      y = labels[jj]
      row_score = lambda i, jj=jj, y=y: score_fn(y, preds[i, jj])
    else:
      row_score = lambda i: score_fn(labels, preds[i])
    l = np.mean([np.mean([row_score(i) for i in base[s]]) for s in b])
    le = np.mean([np.mean([row_score(i) for i in expt[s]]) for s in e])
    out.append((l, le))
  return out


def toy_runs(seed=0, n_examples=30):
  """Seeds 3, 7, 11 (+ 20 baseline only, 5 experiment only); 1-3 runs each."""
  r = np.random.RandomState(seed)
  rows = []
  for s, arm, k in [(3, False, 2), (7, False, 1), (11, False, 3), (20, False, 1),
                    (3, True, 1), (5, True, 2), (7, True, 2), (11, True, 1)]:
    rows += [{"seed": s, "intervention": arm, "lr": j} for j in range(k)]
  r.shuffle(rows)
  labels = r.randint(0, 2, n_examples)
  flip = r.rand(len(rows), n_examples) < 0.3
  preds = np.where(flip, 1 - labels, labels)
  return rows, preds, labels


@pytest.mark.parametrize("paired,sample_seeds,sample_examples",
                         list(itertools.product([False, True], repeat=3)))
def test_matches_reference_rng_order(paired, sample_seeds, sample_examples,
                                     caplog):
  rows, preds, labels = toy_runs()
  kw = dict(paired_seeds=paired, sample_seeds=sample_seeds,
            sample_examples=sample_examples, nboot=25)
  with caplog.at_level(logging.WARNING):
    got = mb.multibootstrap(rows, preds, labels, metrics.f1, rng=123, **kw)
  want = reference(rows, preds, labels, metrics.f1, paired, sample_seeds,
                   sample_examples, 25, np.random.RandomState(123))
  assert got == [(float(a), float(b)) for a, b in want]
  if paired:
    assert "[5, 20]" in caplog.text  # one-arm seeds dropped, with a warning
  # A Generator is consumed the same way.
  got = mb.multibootstrap(rows, preds, labels, metrics.f1,
                          rng=np.random.default_rng(5), **kw)
  want = reference(rows, preds, labels, metrics.f1, paired, sample_seeds,
                   sample_examples, 25, np.random.default_rng(5))
  assert got == [(float(a), float(b)) for a, b in want]
  # The per-example fast path equals score_fn = mean of per-example scores.
  correct = (preds == labels).astype(float)
  plain = mb.multibootstrap(rows, correct, labels, lambda y, p: np.mean(p),
                            rng=9, **kw)
  assert mb.multibootstrap(rows, correct, None, None, rng=9, per_example=True,
                           **kw) == plain


def test_no_resampling_gives_point_estimate():
  rows = [{"seed": s, "intervention": t} for s, t in
          [(0, False), (0, False), (1, False), (0, True), (1, True), (1, True)]]
  labels = np.array([1, 0, 1, 1])
  preds = np.array([[1, 0, 1, 1],   # 1.0   seed 0 base: (1.0 + 0.75) / 2
                    [1, 1, 1, 1],   # 0.75
                    [0, 0, 1, 1],   # 0.75  seed 1 base -> L = 0.8125
                    [1, 0, 0, 0],   # 0.5   seed 0 expt
                    [1, 0, 1, 0],   # 0.75  seed 1 expt: (0.75 + 0.25) / 2
                    [0, 1, 0, 1]])  # 0.25  -> L' = 0.5
  for paired in (False, True):
    samples = mb.multibootstrap(rows, preds, labels, metrics.accuracy,
                                paired_seeds=paired, sample_seeds=False,
                                sample_examples=False, nboot=3, rng=0)
    assert samples == [(0.8125, 0.5)] * 3
    assert mb.point_estimate(rows, preds, labels, metrics.accuracy,
                             paired) == (0.8125, 0.5)
  # The same table as a dict of columns and as a DataFrame-like object.
  cols = {"seed": [r["seed"] for r in rows],
          "intervention": [r["intervention"] for r in rows]}

  class FakeFrame:  # what multibootstrap uses of a pandas DataFrame
    columns = list(cols)
    iloc = None

    def __getitem__(self, key):
      return cols[key]

  for table in (cols, FakeFrame()):
    assert mb.point_estimate(table, preds, labels,
                             metrics.accuracy) == (0.8125, 0.5)


def test_reproducible_and_rng_kinds():
  rows, preds, labels = toy_runs()
  a = mb.multibootstrap(rows, preds, labels, metrics.accuracy, nboot=20, rng=4)
  assert a == mb.multibootstrap(rows, preds, labels, metrics.accuracy,
                                nboot=20, rng=4)
  assert a == mb.multibootstrap(rows, preds, labels, metrics.accuracy,
                                nboot=20, rng=np.random.RandomState(4))
  assert a != mb.multibootstrap(rows, preds, labels, metrics.accuracy,
                                nboot=20, rng=5)
  assert len(mb.multibootstrap(rows, preds, labels, metrics.accuracy,
                               nboot=7)) == 7
  with pytest.raises(TypeError, match="rng"):
    mb.multibootstrap(rows, preds, labels, metrics.accuracy, rng="x")


def test_bootstrap_arm_matches_paired_baseline():
  rows, preds, labels = toy_runs()
  base = [i for i, r in enumerate(rows) if not r["intervention"]]
  seeds = [rows[i]["seed"] for i in base]
  arm = mb.bootstrap_arm(seeds, preds[base], labels, metrics.f1, nboot=15,
                         rng=2)
  twin = {"seed": seeds * 2, "intervention": [False] * len(base) + [True] *
          len(base)}
  both = mb.multibootstrap(twin, np.concatenate([preds[base]] * 2), labels,
                           metrics.f1, paired_seeds=True, nboot=15, rng=2)
  assert arm.tolist() == [l for l, _ in both] == [e for _, e in both]


def synthetic(effect, seed, n_seeds=10, n_examples=200, noise=0.02):
  """Per-example scores: a per-seed offset shared by both arms + small noise."""
  r = np.random.RandomState(seed)
  offsets = r.normal(0, 0.1, n_seeds)
  base = offsets[:, None] + r.normal(0, noise, (n_seeds, n_examples))
  expt = offsets[:, None] + effect + r.normal(0, noise, (n_seeds, n_examples))
  run_info = {"seed": list(range(n_seeds)) * 2,
              "intervention": [False] * n_seeds + [True] * n_seeds}
  return run_info, np.concatenate([base, expt])


def test_pairing_reduces_variance_of_delta():
  run_info, preds = synthetic(0.01, seed=0)
  var = {}
  for paired in (False, True):
    s = np.array(mb.multibootstrap(run_info, preds, None, None, paired,
                                   nboot=300, rng=0, per_example=True))
    var[paired] = np.var(s[:, 1] - s[:, 0])
  assert var[True] < var[False] / 20


def test_known_effect_and_p_floor():
  run_info, preds = synthetic(0.02, seed=1)
  samples = mb.multibootstrap(run_info, preds, None, None, paired_seeds=True,
                              nboot=200, rng=0, per_example=True)
  rep = mb.report_ci(samples)
  assert rep["delta"]["low"] > 0 and abs(rep["delta"]["mean"] - 0.02) < 0.005
  assert rep["delta"]["p"] == 1 / 200  # no sample <= 0: floored at 1/nboot
  neg = mb.report_ci(samples, expect_negative_effect=True)
  assert neg["delta"]["p"] == 1.0


def test_no_effect_p_roughly_uniform():
  ps, covered = [], 0
  for seed in range(40):
    run_info, preds = synthetic(0.0, seed=100 + seed, n_seeds=5,
                                n_examples=50, noise=0.05)
    rep = mb.report_ci(mb.multibootstrap(
        run_info, preds, None, None, paired_seeds=True, nboot=100, rng=seed,
        per_example=True))
    ps.append(rep["delta"]["p"])
    covered += rep["delta"]["low"] <= 0 <= rep["delta"]["high"]
  assert 0.3 < np.mean(ps) < 0.7
  assert np.mean(np.array(ps) < 0.05) <= 0.15 and covered >= 34


def test_report_ci_quantiles_and_thresholds():
  r = np.random.RandomState(0)
  s = np.stack([r.normal(0.8, 0.01, 501), r.normal(0.81, 0.01, 501)], axis=1)
  rep = mb.report_ci(s, c=0.9, abs_threshold=0.005, rel_threshold=0.01)
  d = s[:, 1] - s[:, 0]
  q = [(1 - 0.9) / 2, 1 - (1 - 0.9) / 2]  # as published (0.04999...)
  for key, x in (("base", s[:, 0]), ("expt", s[:, 1]), ("delta", d)):
    assert rep[key]["mean"] == np.mean(x)
    assert [rep[key]["low"], rep[key]["high"]] == np.quantile(x, q).tolist()
  assert rep["delta"]["p"] == np.mean(d <= 0)
  assert rep["delta"]["p_abs_threshold"] == np.mean(d >= 0.005)
  assert rep["delta"]["p_rel_threshold"] == np.mean(d / s[:, 0] >= 0.01)
  neg = mb.report_ci(s, expect_negative_effect=True, abs_threshold=0.005,
                     rel_threshold=0.01)
  assert neg["delta"]["p"] == max(np.mean(d >= 0), 1 / 501)
  assert neg["delta"]["p_abs_threshold"] == np.mean(d <= -0.005)
  assert neg["delta"]["p_rel_threshold"] == np.mean(d / s[:, 0] <= -0.01)
  assert "p_abs_threshold" not in mb.report_ci(s)["delta"]
  assert "one-sided p" in mb.format_report(rep, 0.9)
  with pytest.raises(ValueError, match="pairs"):
    mb.report_ci([1.0, 2.0])
  with pytest.raises(ValueError, match="confidence"):
    mb.report_ci(s, c=95)


def test_input_errors():
  rows, preds, labels = toy_runs()
  f = metrics.accuracy
  with pytest.raises(ValueError, match="rows but run_info has"):
    mb.multibootstrap(rows, preds[1:], labels, f)
  with pytest.raises(ValueError, match="labels has shape"):
    mb.multibootstrap(rows, preds, labels[1:], f)
  with pytest.raises(ValueError, match="preds must be"):
    mb.multibootstrap(rows, preds[:, 0], labels, f)
  with pytest.raises(ValueError, match=r"lacks column\(s\) \['intervention'\]"):
    mb.multibootstrap([{"seed": 0}], preds[:1], labels, f)
  with pytest.raises(ValueError, match="lacks column"):
    mb.multibootstrap({"seed": [0]}, preds[:1], labels, f)
  with pytest.raises(ValueError, match="differ in length"):
    mb.multibootstrap({"seed": [0, 1], "intervention": [True]}, preds[:2],
                      labels, f)
  with pytest.raises(ValueError, match="must be a bool"):
    mb.multibootstrap({"seed": [0], "intervention": ["False"]}, preds[:1],
                      labels, f)
  with pytest.raises(ValueError, match="no experiment runs"):
    mb.multibootstrap({"seed": [0, 1], "intervention": [False, 0]},
                      preds[:2], labels, f)
  with pytest.raises(ValueError, match="no baseline runs"):
    mb.multibootstrap({"seed": [0], "intervention": [True]}, preds[:1],
                      labels, f)
  with pytest.raises(ValueError, match="share no seed"):
    mb.multibootstrap({"seed": [0, 1], "intervention": [False, True]},
                      preds[:2], labels, f, paired_seeds=True)
  with pytest.raises(ValueError, match="labels are required"):
    mb.multibootstrap(rows, preds, None, f)
  with pytest.raises(ValueError, match="nboot"):
    mb.multibootstrap(rows, preds, labels, f, nboot=0)
  with pytest.raises(TypeError, match="run_info must be"):
    mb.multibootstrap(42, preds, labels, f)
  with pytest.raises(ValueError, match="no runs"):
    mb.bootstrap_arm([], preds, labels, f)


def test_metrics_hand_values():
  y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
  p = np.array([1, 0, 1, 0, 1, 0, 1, 0])  # TP 3, FN 1, FP 1, TN 3
  assert metrics.accuracy(y, p) == 0.75
  assert metrics.f1(y, p) == 0.75  # 2*3 / (2*3 + 1 + 1)
  assert metrics.matthews_corrcoef(y, p) == pytest.approx(0.5)  # 8 / 16
  # Binary MCC is the phi coefficient (Pearson of the 0/1 vectors), label
  # names do not matter, degenerate cases are 0.
  y2, p2 = np.array([1, 1, 0, 0, 1, 0, 1]), np.array([1, 0, 0, 0, 1, 1, 1])
  assert metrics.matthews_corrcoef(y2, p2) == pytest.approx(
      metrics.pearson(y2, p2))
  assert metrics.matthews_corrcoef(np.where(y2, "a", "b"), np.where(
      p2, "a", "b")) == pytest.approx(metrics.matthews_corrcoef(y2, p2))
  assert metrics.matthews_corrcoef(y, np.ones_like(y)) == 0.0
  # 3 classes: (c*s - t.q) / (s^2 - 12) = (3*6 - 3*2*2) / (36 - 12).
  assert metrics.matthews_corrcoef([0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 0]
                                   ) == pytest.approx(0.25)
  assert metrics.f1([0, 0], [0, 0]) == 0.0
  assert np.isnan(metrics.pearson([1.0, 2.0], [3.0, 3.0]))
  assert metrics.rankdata([10, 20, 10, 30, 20, 20]).tolist() == [
      1.5, 4.0, 1.5, 6.0, 4.0, 4.0]
  with pytest.raises(ValueError, match="equal"):
    metrics.accuracy([1, 2], [1])
  with pytest.raises(ValueError, match="unknown metric"):
    metrics.get("bleu")


def test_metrics_vs_scipy():
  stats = pytest.importorskip("scipy.stats")
  r = np.random.RandomState(0)
  x = r.randint(0, 5, 40).astype(float)  # many ties
  y = x + r.randint(0, 3, 40)
  assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0],
                                                 abs=1e-12)
  assert metrics.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0],
                                                abs=1e-12)
  assert np.array_equal(metrics.rankdata(y), stats.rankdata(y))


def write_run(path, labels, preds, meta=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for i in np.random.RandomState(len(path)).permutation(len(labels)):
      f.write(json.dumps({"index": int(i), "label": int(labels[i]),
                          "prediction": int(preds[i])}) + "\n")
  if meta is not None:
    with open(path[:-len(".jsonl")] + ".meta.json", "w") as f:
      json.dump(meta, f)


@pytest.fixture(name="runs_dir")
def fixture_runs_dir(tmp_path):
  """5 seeds x 2 fine-tuning runs per arm; the experiment is ~8 points better;
  a 3-checkpoint learning curve for the baseline."""
  r = np.random.RandomState(0)
  labels = r.randint(0, 2, 300)
  noisy = lambda err: np.where(r.rand(300) < err, 1 - labels, labels)
  for seed in range(5):
    for ft in range(2):
      meta = {"finetune_seed": ft, "task": "toy", "metric": "accuracy"}
      write_run(str(tmp_path / f"base/seed_{seed}/ft{ft}/predictions.jsonl"),
                labels, noisy(0.25), meta)
      write_run(str(tmp_path / f"exp/run{seed}_{ft}/predictions.jsonl"),
                labels, noisy(0.17), dict(meta, seed=seed))
    for step in (20, 40, 100):
      write_run(str(tmp_path / f"curve/seed_{seed}/step_{step}k/"
                    "predictions.jsonl"), labels, noisy(0.5 - step / 400))
  return tmp_path


def test_cli_end_to_end(runs_dir, capsys):
  argv = [f"--baseline={runs_dir}/base/seed_*/*/predictions.jsonl",
          f"--experiment={runs_dir}/exp/*/predictions.jsonl", "--paired",
          "--nboot=200", "--seed=3", "--json",
          f"--curve={runs_dir}/curve/*/*/predictions.jsonl"]
  if importlib.util.find_spec("matplotlib"):
    argv += [f"--plot={runs_dir}/ci.png", f"--curve_plot={runs_dir}/curve.png"]
  out = cli.main(argv)
  printed = json.loads(capsys.readouterr().out)
  assert printed == json.loads(json.dumps(out))
  assert printed["metric"] == "accuracy" and printed["task"] == "toy"
  assert printed["baseline"] == {"n_runs": 10, "seeds": [0, 1, 2, 3, 4]}
  rep = printed["report"]
  assert rep["delta"]["low"] > 0 and rep["delta"]["p"] == 1 / 200
  # The same numbers straight from the library (plain score_fn path).
  runs = [cli.read_predictions(p) for p in sorted(
      cli.expand([argv[0].split("=", 1)[1]], "b"))]
  runs += [cli.read_predictions(p) for p in sorted(
      cli.expand([argv[1].split("=", 1)[1]], "e"))]
  run_info = {"seed": [r.seed for r in runs],
              "intervention": [i >= 10 for i in range(20)]}
  samples = mb.multibootstrap(run_info, np.stack([r.preds for r in runs]),
                              runs[0].labels, metrics.accuracy,
                              paired_seeds=True, nboot=200, rng=3)
  assert rep == mb.report_ci(samples)
  curve = printed["curve"]["points"]
  assert [p["step"] for p in curve] == [20000, 40000, 100000]
  assert curve[0]["mean"] < curve[2]["mean"] and curve[2]["n_runs"] == 5
  if "--plot" in " ".join(argv):
    for name in ("ci.png", "curve.png"):
      with open(runs_dir / name, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # Human-readable output, F1 through the plain score_fn path, unpaired.
  cli.main(argv[:2] + ["--metric=f1", "--nboot=20"])
  text = capsys.readouterr().out
  assert "metric: f1" in text and "unpaired" in text and "one-sided p" in text


def test_cli_errors(runs_dir, monkeypatch):
  base = f"--baseline={runs_dir}/base/seed_*/*/predictions.jsonl"
  bad = runs_dir / "bad/seed_9/predictions.jsonl"
  labels = np.zeros(300, int)
  write_run(str(bad), labels, labels)
  with pytest.raises(ValueError, match="disagree on the label"):
    cli.main([base, f"--experiment={bad}"])
  write_run(str(bad), labels[:10], labels[:10])
  with pytest.raises(ValueError, match="different examples"):
    cli.main([base, f"--experiment={bad}"])
  with pytest.raises(ValueError, match="matches no file"):
    cli.main([base, f"--experiment={runs_dir}/nothing*.jsonl"])
  with pytest.raises(ValueError, match="--metric is required"):
    cli.main([f"--curve={runs_dir}/curve/*/*/predictions.jsonl"])
  with pytest.raises(SystemExit):
    cli.main([base])  # --experiment missing
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
  with pytest.raises(ImportError, match="pip install matplotlib"):
    cli.main([base, base.replace("--baseline", "--experiment"), "--nboot=5",
              f"--plot={runs_dir}/x.png"])


def test_python_dash_m(runs_dir):
  proc = subprocess.run(
      [sys.executable, "-m", "bert_jax.stats",
       f"--baseline={runs_dir}/base/seed_*/*/predictions.jsonl",
       f"--experiment={runs_dir}/bad_glob/*.jsonl"],
      cwd=ROOT, capture_output=True, text=True, check=False)
  assert proc.returncode == 2 and "matches no file" in proc.stderr


def test_cli_help_one_seed_warning_and_plot_dirs(runs_dir, capsys,
                                                 monkeypatch):
  with pytest.raises(SystemExit):
    cli.parse_args(["--help"])
  helptext = capsys.readouterr().out
  for flag in ("--nboot", "--confidence", "--abs_threshold",
               "--rel_threshold", "--expect_negative_effect"):
    assert flag in helptext
    assert helptext.split(flag, 1)[1].split("--", 1)[0].strip(), flag
  warned = []
  monkeypatch.setattr(cli.logging, "warning",
                      lambda msg, *a: warned.append(msg % a))
  argv = [f"--baseline={runs_dir}/base/seed_0/*/predictions.jsonl",
          f"--experiment={runs_dir}/exp/*/predictions.jsonl", "--nboot=20"]
  if importlib.util.find_spec("matplotlib"):
    argv.append(f"--plot={runs_dir}/new/dir/ci.png")
  cli.main(argv)
  assert len(warned) == 1 and warned[0].startswith("--baseline has one seed")
  if importlib.util.find_spec("matplotlib"):
    assert (runs_dir / "new" / "dir" / "ci.png").exists()
