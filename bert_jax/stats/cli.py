r"""Multi-bootstrap comparison of fine-tuning predictions across pretraining seeds.

  python -m bert_jax.stats --baseline='runs/base/seed_*/predictions.jsonl' \
      --experiment='runs/exp/seed_*/predictions.jsonl' --metric=accuracy \
      [--paired] [--nboot=1000] [--seed=0] [--confidence=0.95] \
      [--expect_negative_effect] [--abs_threshold=X] [--rel_threshold=X] \
      [--json] [--plot=ci.png] \
      [--curve='runs/base/seed_*/step_*/predictions.jsonl' --curve_plot=curve.png]

Prediction files (what fine-tuning tools write), JSON lines, one per evaluation
example, in any order:

  {"index": 17, "label": 1, "prediction": 0}

`index`: the example's position in the evaluation set (int, unique); `label`:
the gold label; `prediction`: a class id for classification, a float for
regression. Other keys are ignored. Next to `NAME.jsonl` an optional
`NAME.meta.json` (e.g. `predictions.meta.json`) describes the run:

  {"seed": 3, "finetune_seed": 1, "task": "mrpc", "checkpoint_step": 2000000,
   "metric": "f1"}

`seed` is the pretraining seed (without it, the `seed_<K>` path component is
used); `checkpoint_step` places a file on the `--curve` (else a `step_<N>` or
`step_<N>k` path component); `metric` is the default for `--metric`. Several
files with one seed (fine-tuning seeds, learning rates) are averaged within
the seed. Every file compared must hold the same indexes with the same labels.

Each glob flag may be repeated or given several patterns. `--curve` gives, for
each checkpoint step, the mean over seeds with a seed + example bootstrap
interval (single arm; each step uses a fresh RandomState(--seed)).
"""

import argparse
import dataclasses
import glob
import json
import logging
import os
import re
import sys
from typing import Any, Optional

import numpy as np

from bert_jax.stats import metrics
from bert_jax.stats import multibootstrap as mb


@dataclasses.dataclass
class Predictions:
  path: str
  seed: Any
  step: Optional[int]
  meta: dict
  index: np.ndarray
  labels: np.ndarray
  preds: np.ndarray


def _meta_path(path: str) -> str:
  root = path[:-len(".jsonl")] if path.endswith(".jsonl") else path
  return root + ".meta.json"


def _from_path(path: str, pattern: str) -> Optional[re.Match]:
  """The match in the path component nearest the file."""
  parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
  for part in reversed(parts[:-1]):
    m = re.search(r"(?<![A-Za-z0-9])" + pattern + r"(?![0-9])", part)
    if m:
      return m
  return None


def read_predictions(path: str) -> Predictions:
  """One prediction file (+ its optional .meta.json), sorted by index."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        r = json.loads(line)
        rows.append((int(r["index"]), r["label"], r["prediction"]))
      except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}:{n}: expected a JSON object with 'index', "
                         f"'label', 'prediction' ({e!r})") from None
  if not rows:
    raise ValueError(f"{path}: no predictions")
  rows.sort(key=lambda r: r[0])
  index = np.array([r[0] for r in rows])
  if np.any(index[1:] == index[:-1]):
    dup = index[1:][index[1:] == index[:-1]][0]
    raise ValueError(f"{path}: index {dup} appears more than once")
  meta = {}
  if os.path.exists(_meta_path(path)):
    with open(_meta_path(path), encoding="utf-8") as f:
      meta = json.load(f)
  seed = meta.get("seed")
  if seed is None:
    m = _from_path(path, r"seed_(\d+)")
    if m is None:
      raise ValueError(f"{path}: no pretraining seed: write \"seed\" in "
                       f"{_meta_path(path)} or put it under a seed_<K> folder")
    seed = int(m.group(1))
  step = meta.get("checkpoint_step")
  if step is None:
    m = _from_path(path, r"step_(\d+)(k?)")
    if m:
      step = int(m.group(1)) * (1000 if m.group(2) else 1)
  return Predictions(path, seed, None if step is None else int(step), meta,
                     index, np.array([r[1] for r in rows]),
                     np.array([r[2] for r in rows]))


def expand(patterns: list[str], flag: str) -> list[str]:
  paths = []
  for pattern in patterns:
    found = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    if not found:
      raise ValueError(f"--{flag}={pattern!r} matches no file")
    paths += [p for p in found if p not in paths]
  return paths


def check_aligned(runs: list[Predictions]) -> None:
  ref = runs[0]
  for r in runs[1:]:
    if not np.array_equal(r.index, ref.index):
      raise ValueError(f"{r.path} and {ref.path} cover different examples "
                       f"({len(r.index)} vs {len(ref.index)} indexes)")
    if not np.array_equal(r.labels, ref.labels):
      i = int(np.flatnonzero(r.labels != ref.labels)[0])
      raise ValueError(f"{r.path} and {ref.path} disagree on the label of "
                       f"example {ref.index[i]}")


def _metric_name(flag: Optional[str], runs: list[Predictions]) -> str:
  if flag:
    return flag
  names = {r.meta["metric"] for r in runs if "metric" in r.meta}
  if len(names) != 1:
    raise ValueError("--metric is required (the .meta.json files name "
                     f"{sorted(names) or 'no metric'})")
  return names.pop()


def _scoring(name: str, runs: list[Predictions]):
  """(preds, labels, score_fn, per_example) for multibootstrap."""
  labels = runs[0].labels
  if name in metrics.PER_EXAMPLE:
    per = metrics.PER_EXAMPLE[name]
    return np.stack([per(labels, r.preds) for r in runs]), None, None, True
  return np.stack([r.preds for r in runs]), labels, metrics.get(name), False


def _seed_list(runs):
  return mb._sorted({r.seed for r in runs})  # pylint: disable=protected-access


def compare(base, expt, args) -> dict:
  runs = base + expt
  check_aligned(runs)
  for name, arm in (("--baseline", base), ("--experiment", expt)):
    if len({r.seed for r in arm}) < 2:
      logging.warning("%s has one seed: its interval covers examples only, "
                      "not the variation between pretraining seeds that "
                      "the multi-bootstrap is for.", name)
  metric = _metric_name(args.metric, runs)
  preds, labels, score_fn, per_example = _scoring(metric, runs)
  run_info = {"seed": [r.seed for r in runs],
              "intervention": [False] * len(base) + [True] * len(expt)}
  point = mb.point_estimate(run_info, preds, labels, score_fn, args.paired,
                            per_example=per_example)
  samples = mb.multibootstrap(
      run_info, preds, labels, score_fn, paired_seeds=args.paired,
      sample_seeds=not args.no_sample_seeds,
      sample_examples=not args.no_sample_examples, nboot=args.nboot,
      rng=args.seed, per_example=per_example)
  report = mb.report_ci(samples, args.confidence, args.expect_negative_effect,
                        args.abs_threshold, args.rel_threshold)
  tasks = sorted({str(r.meta["task"]) for r in runs if "task" in r.meta})
  return {
      "metric": metric, "task": tasks[0] if len(tasks) == 1 else tasks,
      "paired": args.paired, "nboot": args.nboot, "seed": args.seed,
      "confidence": args.confidence,
      "expect_negative_effect": args.expect_negative_effect, "n_examples": len(runs[0].index),
      "baseline": {"n_runs": len(base), "seeds": _seed_list(base)},
      "experiment": {"n_runs": len(expt), "seeds": _seed_list(expt)},
      "point": {"base": point[0], "expt": point[1],
                "delta": point[1] - point[0]},
      "report": report}


def learning_curve(runs: list[Predictions], args,
                   metric: Optional[str] = None) -> dict:
  """Per checkpoint step: point estimate and single-arm bootstrap interval."""
  by_step: dict[int, list[Predictions]] = {}
  for r in runs:
    if r.step is None:
      raise ValueError(f"{r.path}: no checkpoint step: write "
                       "\"checkpoint_step\" in its .meta.json or put it under "
                       "a step_<N> folder")
    by_step.setdefault(r.step, []).append(r)
  metric = _metric_name(args.metric or metric, runs)
  points = []
  for step in sorted(by_step):
    group = by_step[step]
    check_aligned(group)
    preds, labels, score_fn, per_example = _scoring(metric, group)
    seeds = [r.seed for r in group]
    kw = dict(score_fn=score_fn, per_example=per_example)
    point = mb.bootstrap_arm(seeds, preds, labels, sample_seeds=False,
                             sample_examples=False, nboot=1, rng=0, **kw)[0]
    samples = mb.bootstrap_arm(seeds, preds, labels, nboot=args.nboot,
                               rng=args.seed, **kw)
    points.append(dict(step=step, n_runs=len(group),
                       n_seeds=len(set(seeds)), point=float(point),
                       **mb.interval(samples, args.confidence)))
  return {"metric": metric, "points": points}


def _figure(flag: str, **kw):
  try:
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(f"{flag} needs matplotlib: pip install matplotlib") from None
  return Figure(**kw)


def _plot_dir(path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def plot_ci(result: dict, path: str) -> None:
  """Baseline/experiment intervals (left) and the delta interval (right)."""
  _plot_dir(path)
  rep = result["report"]
  fig = _figure("--plot", figsize=(8, 2.6), layout="constrained")
  left, right = fig.subplots(1, 2, width_ratios=[3, 2])
  for ax, keys, names in ((left, ("base", "expt"), ("baseline", "experiment")),
                          (right, ("delta",), ("experiment - baseline",))):
    for y, key in enumerate(keys):
      r = rep[key]
      ax.errorbar([r["mean"]], [y], xerr=[[r["mean"] - r["low"]],
                                          [r["high"] - r["mean"]]],
                  fmt="o", capsize=4)
    ax.set_yticks(range(len(keys)), names)
    ax.set_ylim(-0.7, len(keys) - 0.3)
    ax.set_xlabel(result["metric"])
  right.set_xlabel(f"difference in {result['metric']}")
  right.axvline(0.0, color="grey", linestyle="--", linewidth=1)
  right.set_title(f"p = {rep['delta']['p']:.3g}", fontsize=9)
  fig.suptitle(f"{100 * result['confidence']:g}% multi-bootstrap intervals "
               f"({'paired' if result['paired'] else 'unpaired'}, "
               f"nboot={result['nboot']})", fontsize=10)
  fig.savefig(path, dpi=120)


def plot_curve(curve: dict, confidence: float, path: str) -> None:
  _plot_dir(path)
  fig = _figure("--curve_plot", figsize=(6, 4), layout="constrained")
  ax = fig.subplots()
  pts = curve["points"]
  steps = [p["step"] for p in pts]
  ax.plot(steps, [p["mean"] for p in pts], marker="o", label="mean over seeds")
  ax.fill_between(steps, [p["low"] for p in pts], [p["high"] for p in pts],
                  alpha=0.3, label=f"{100 * confidence:g}% interval")
  ax.set_xlabel("pretraining step")
  ax.set_ylabel(curve["metric"])
  ax.legend()
  fig.savefig(path, dpi=120)


def format_result(result: dict) -> str:
  lines = [f"metric: {result['metric']}  task: {result['task'] or '-'}  "
           f"{'paired' if result['paired'] else 'unpaired'}  "
           f"nboot: {result['nboot']}  seed: {result['seed']}  "
           f"examples: {result['n_examples']}"]
  for key in ("baseline", "experiment"):
    arm = result[key]
    lines.append(f"{key + ':':11} {arm['n_runs']} runs, {len(arm['seeds'])} "
                 f"seeds {arm['seeds']}")
  pt = result["point"]
  lines.append(f"point estimate: L = {pt['base']:.6f}, L' = {pt['expt']:.6f}, "
               f"L'-L = {pt['delta']:.6f}")
  lines.append(mb.format_report(result["report"], result["confidence"],
                                result["expect_negative_effect"]))
  return "\n".join(lines)


def format_curve(curve: dict) -> str:
  lines = [f"learning curve ({curve['metric']}):",
           f"{'step':>10} {'seeds':>5} {'runs':>5} {'mean':>9} {'low':>9} "
           f"{'high':>9}"]
  for p in curve["points"]:
    lines.append(f"{p['step']:>10} {p['n_seeds']:>5} {p['n_runs']:>5} "
                 f"{p['mean']:9.6f} {p['low']:9.6f} {p['high']:9.6f}")
  return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m bert_jax.stats", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  glob_kw = dict(action="extend", nargs="+", default=[], metavar="GLOB")
  p.add_argument("--baseline", help="Baseline prediction files (L).", **glob_kw)
  p.add_argument("--experiment", help="Experiment prediction files (L').",
                 **glob_kw)
  p.add_argument("--metric", choices=sorted(metrics.METRICS),
                 help="Default: the 'metric' of the .meta.json files.")
  p.add_argument("--paired", action="store_true",
                 help="Both arms use the same pretraining seeds.")
  p.add_argument("--nboot", type=int, default=1000,
                 help="Bootstrap samples (default %(default)s).")
  p.add_argument("--seed", type=int, default=0, help="RandomState seed.")
  p.add_argument("--confidence", type=float, default=0.95,
                 help="Interval coverage, e.g. 0.95 (default %(default)s).")
  p.add_argument("--expect_negative_effect", action="store_true",
                 help="The hypothesis is that the experiment scores lower.")
  p.add_argument("--abs_threshold", type=float,
                 help="Smallest absolute delta that matters: report "
                      "P(delta > X) (MultiBERTs' practical significance).")
  p.add_argument("--rel_threshold", type=float,
                 help="As --abs_threshold, relative to the baseline mean.")
  p.add_argument("--no_sample_seeds", action="store_true",
                 help="Do not resample pretraining seeds.")
  p.add_argument("--no_sample_examples", action="store_true",
                 help="Do not resample evaluation examples.")
  p.add_argument("--json", action="store_true", help="Print JSON.")
  p.add_argument("--plot", help="PNG of the intervals.")
  p.add_argument("--curve", help="Prediction files of intermediate "
                 "checkpoints (one arm).", **glob_kw)
  p.add_argument("--curve_plot", help="PNG of the learning curve.")
  args = p.parse_args(argv)
  if bool(args.baseline) != bool(args.experiment):
    p.error("--baseline and --experiment go together")
  if not args.baseline and not args.curve:
    p.error("give --baseline and --experiment, and/or --curve")
  if args.plot and not args.baseline:
    p.error("--plot needs --baseline and --experiment")
  if args.curve_plot and not args.curve:
    p.error("--curve_plot needs --curve")
  if args.nboot < 1 or not 0 < args.confidence < 1:
    p.error("need --nboot >= 1 and 0 < --confidence < 1")
  return args


def main(argv=None) -> dict:
  """Runs the CLI, prints the report and returns it (as the JSON printed)."""
  args = parse_args(argv)
  out: dict[str, Any] = {}
  if args.baseline:
    base = [read_predictions(p) for p in expand(args.baseline, "baseline")]
    expt = [read_predictions(p) for p in expand(args.experiment, "experiment")]
    out = compare(base, expt, args)
  if args.curve:
    curve_runs = [read_predictions(p) for p in expand(args.curve, "curve")]
    out["curve"] = learning_curve(curve_runs, args, out.get("metric"))
  if args.plot:
    plot_ci(out, os.path.expanduser(args.plot))
  if args.curve_plot:
    plot_curve(out["curve"], args.confidence,
               os.path.expanduser(args.curve_plot))
  if args.json:
    print(json.dumps(out, indent=1))
  else:
    text = [format_result(out)] if args.baseline else []
    text += [format_curve(out["curve"])] if args.curve else []
    print("\n\n".join(text))
  return out


def run() -> None:
  """Console entry point: user errors print one line and exit with status 2."""
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
  try:
    main()
  except (ValueError, ImportError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
