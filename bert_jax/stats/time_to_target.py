r"""Time to a target held-out MLM accuracy, and final accuracy, across seeds
and recipes, from the `evals.jsonl` every training run writes.

  python -m bert_jax.stats.time_to_target \
      --runs=original='runs/original/seed_*' --runs=modern='runs/modern/seed_*' \
      [--target=0.30] [--nboot=1000] [--seed=0] [--confidence=0.95] \
      [--plot=curves.png] [--axis=train_time_s|examples|step] [--json]

Each `--runs=NAME=GLOB` is one recipe (arm); GLOB matches its workdirs, one
per pretraining seed (`seed_<K>` in the path names the seed, as seed_sweep
writes them). The first arm is the baseline. A run's time to target is the
training time (`train_time_s`: wall time less held-out evaluation, resumes
included) of its first evaluation at or above `--target` (default: the
`target` of the runs' `target.json`), with the step and training examples
seen there; its final accuracy is its last evaluation's.

Intervals resample the seeds of each arm (the bootstrap half of the
multi-bootstrap; every run is scored on the same fixed held-out examples,
whose own sampling error is not resampled, as the files keep no
per-example results). Each other arm is compared with the baseline: the
difference in time to target (P[not faster]), the speed-up (baseline time /
arm time) and the difference in final accuracy (P[not higher]). A run that
never reached the target is counted as such; its arm's time interval is then
over the seeds that did, and flagged.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import sys
from typing import Optional

import numpy as np

from bert_jax import history
from bert_jax.stats import multibootstrap as mb

AXES = {"train_time_s": "training time (s, evaluation excluded)",
        "examples": "training examples seen", "step": "step"}


@dataclasses.dataclass
class Run:
  """One workdir's evaluations."""
  workdir: str
  seed: int
  evals: list[dict]
  target_record: Optional[dict]

  def first_at(self, target: float) -> Optional[dict]:
    """The first evaluation at or above `target`, or None."""
    return next((e for e in self.evals
                 if e["eval_mlm_accuracy"] >= target), None)

  @property
  def final(self) -> dict:
    return self.evals[-1]


def _seed_of(workdir: str, position: int) -> int:
  for part in reversed(os.path.normpath(os.path.abspath(workdir)).split(
      os.sep)):
    m = re.fullmatch(r"seed_(\d+)", part)
    if m:
      return int(m.group(1))
  return position


def read_arm(name: str, pattern: str) -> list[Run]:
  """The runs of one `--runs` glob (directories with an evals.jsonl)."""
  dirs = sorted(d for d in glob.glob(os.path.expanduser(pattern))
                if os.path.isdir(d))
  if not dirs:
    raise ValueError(f"--runs={name}={pattern}: matches no directory.")
  runs = []
  for i, d in enumerate(dirs):
    evals, target = history.read(d)
    if not evals:
      raise ValueError(f"--runs={name}: {d} has no {history.EVALS} (no "
                       "held-out evaluation yet; set phaseN.eval_files and "
                       "eval_every or eval_every_examples).")
    runs.append(Run(d, _seed_of(d, i), evals, target))
  seeds = [r.seed for r in runs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"--runs={name}: two workdirs have the same seed "
                     f"({seeds}); put each under its own seed_<K>.")
  return runs


def _target(flag: Optional[float], arms: dict[str, list[Run]]) -> float:
  if flag is not None:
    return flag
  found = {r.target_record["target"] for runs in arms.values() for r in runs
           if r.target_record}
  if len(found) != 1:
    raise ValueError("--target is required (the runs' target.json files "
                     f"name {sorted(found) or 'no target'}).")
  return found.pop()


def _arm_samples(runs: list[Run], values: list[float], nboot: int, rng
                 ) -> np.ndarray:
  return mb.bootstrap_arm([r.seed for r in runs],
                          np.asarray(values, float)[:, None], None, None,
                          sample_examples=False, nboot=nboot, rng=rng,
                          per_example=True)


def _pair_samples(base: list[Run], bv, expt: list[Run], ev, nboot, rng):
  info = {"seed": [r.seed for r in base] + [r.seed for r in expt],
          "intervention": [False] * len(base) + [True] * len(expt)}
  preds = np.asarray(list(bv) + list(ev), float)[:, None]
  return np.asarray(mb.multibootstrap(
      info, preds, None, None, sample_examples=False, nboot=nboot, rng=rng,
      per_example=True))


def summarize(arms: dict[str, list[Run]], target: float, nboot: int = 1000,
              seed: int = 0, confidence: float = 0.95) -> dict:
  """The report: per arm, reached count, time/examples/steps to target and
  final accuracy with intervals; per other arm, the comparison with the
  first. Each bootstrap uses a fresh RandomState(seed)."""
  out = {"target": target, "nboot": nboot, "seed": seed,
         "confidence": confidence, "arms": {}, "comparisons": {}}
  hits = {}
  for name, runs in arms.items():
    hit = [(r, r.first_at(target)) for r in runs]
    hits[name] = [(r, e) for r, e in hit if e is not None]
    arm = {"seeds": [r.seed for r in runs], "reached": len(hits[name]),
           "runs": [{"seed": r.seed, "workdir": r.workdir,
                     "final_mlm_accuracy": r.final["eval_mlm_accuracy"],
                     "final_train_time_s": r.final["train_time_s"],
                     "at_target": None if e is None else {
                         k: e[k] for k in ("step", "examples", "train_time_s",
                                           "eval_mlm_accuracy")}}
                    for r, e in hit]}
    arm["final_mlm_accuracy"] = mb.interval(_arm_samples(
        runs, [r.final["eval_mlm_accuracy"] for r in runs], nboot, seed),
                                            confidence)
    if hits[name]:
      reached = [r for r, _ in hits[name]]
      for key in ("train_time_s", "examples", "step"):
        arm[f"{key}_to_target"] = mb.interval(_arm_samples(
            reached, [e[key] for _, e in hits[name]], nboot, seed), confidence)
    arm["censored"] = len(runs) - len(hits[name])
    out["arms"][name] = arm
  names = list(arms)
  base = names[0]
  for name in names[1:]:
    cmp = {}
    if hits[base] and hits[name]:
      (br, bt), (er, et) = zip(*hits[base]), zip(*hits[name])
      s = _pair_samples(list(br), [e["train_time_s"] for e in bt], list(er),
                        [e["train_time_s"] for e in et], nboot, seed)
      cmp["train_time_s_to_target"] = mb.report_ci(
          s, confidence, expect_negative_effect=True)["delta"]
      cmp["speedup"] = mb.interval(s[:, 0] / s[:, 1], confidence)
    s = _pair_samples(arms[base], [r.final["eval_mlm_accuracy"]
                                   for r in arms[base]],
                      arms[name], [r.final["eval_mlm_accuracy"]
                                   for r in arms[name]], nboot, seed)
    cmp["final_mlm_accuracy"] = mb.report_ci(s, confidence)["delta"]
    out["comparisons"][f"{name} vs {base}"] = cmp
  return out


def _ci(r: dict, fmt: str) -> str:
  return (f"{r['mean']:{fmt}} ({r['low']:{fmt}}, {r['high']:{fmt}})")


def format_report(rep: dict) -> str:
  pct = f"{100 * rep['confidence']:g}%"
  lines = [f"target held-out MLM accuracy {rep['target']:.4f}; {pct} "
           f"intervals over seeds (nboot={rep['nboot']}, seed={rep['seed']})"]
  for name, arm in rep["arms"].items():
    n = len(arm["seeds"])
    lines.append(f"{name}: {n} seeds {arm['seeds']}, {arm['reached']} of {n} "
                 "reached the target" + (" (one seed: the intervals cannot "
                                         "show seed-to-seed variation)"
                                         if n == 1 else ""))
    if "train_time_s_to_target" in arm:
      flag = (f"  [over the {arm['reached']} that reached it]"
              if arm["censored"] else "")
      lines.append("  time to target  " +
                   _ci(arm["train_time_s_to_target"], ".1f") + " s" + flag)
      lines.append("  examples        " +
                   _ci(arm["examples_to_target"], ",.0f"))
      lines.append("  steps           " + _ci(arm["step_to_target"], ".0f"))
    lines.append("  final accuracy  " + _ci(arm["final_mlm_accuracy"], ".4f"))
  for name, cmp in rep["comparisons"].items():
    lines.append(f"{name}:")
    if "speedup" in cmp:
      d = cmp["train_time_s_to_target"]
      lines.append("  time to target difference " + _ci(d, "+.1f") +
                   f" s, P[not faster] = {d['p']:.3g}")
      lines.append("  speed-up                  " + _ci(cmp["speedup"], ".2f")
                   + "x")
    d = cmp["final_mlm_accuracy"]
    lines.append("  final accuracy difference " + _ci(d, "+.4f") +
                 f", P[not higher] = {d['p']:.3g}")
  return "\n".join(lines)


def plot(arms: dict[str, list[Run]], target: float, path: str,
         axis: str = "train_time_s") -> None:
  """Held-out MLM accuracy against `axis`: one thin line per seed, the mean
  over seeds (where every seed has data, interpolated) bold, the target
  dashed, each seed's first evaluation at the target marked."""
  try:
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("--plot needs matplotlib: pip install matplotlib"
                      ) from None
  fig = Figure(figsize=(7, 4.5), layout="constrained")
  ax = fig.subplots()
  for i, (name, runs) in enumerate(arms.items()):
    color = f"C{i}"
    curves = [(np.array([e[axis] for e in r.evals], float),
               np.array([e["eval_mlm_accuracy"] for e in r.evals]))
              for r in runs]
    for (x, y), r in zip(curves, runs):
      ax.plot(x, y, color=color, alpha=0.35, linewidth=1)
      hit = r.first_at(target)
      if hit is not None:
        ax.plot([hit[axis]], [hit["eval_mlm_accuracy"]], "o", color=color,
                markersize=4)
    lo, hi = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
    if hi > lo:
      grid = np.linspace(lo, hi, 100)
      mean = np.mean([np.interp(grid, x, y) for x, y in curves], axis=0)
      ax.plot(grid, mean, color=color, linewidth=2.2,
              label=f"{name} (mean of {len(runs)} seeds)")
    else:
      ax.plot([], [], color=color, label=name)
  ax.axhline(target, color="grey", linestyle="--", linewidth=1,
             label=f"target {target:.3f}")
  ax.set_xlabel(AXES[axis])
  ax.set_ylabel("held-out MLM accuracy")
  ax.legend(fontsize=8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)


def _arm_flag(value: str) -> tuple[str, str]:
  name, eq, pattern = value.partition("=")
  if not eq or not name or not pattern:
    raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=GLOB, e.g. "
                                     "modern='runs/modern/seed_*'")
  return name, pattern


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m bert_jax.stats.time_to_target", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--runs", type=_arm_flag, action="append", required=True,
                 metavar="NAME=GLOB", help="One recipe's seed workdirs; "
                 "repeat per recipe (the first is the baseline).")
  p.add_argument("--target", type=float,
                 help="Held-out MLM accuracy (default: the runs' "
                      "target.json).")
  p.add_argument("--nboot", type=int, default=1000)
  p.add_argument("--seed", type=int, default=0, help="RandomState seed.")
  p.add_argument("--confidence", type=float, default=0.95)
  p.add_argument("--plot", help="PNG of accuracy curves.")
  p.add_argument("--axis", choices=sorted(AXES), default="train_time_s",
                 help="The plot's x axis (default %(default)s).")
  p.add_argument("--json", action="store_true", help="Print JSON.")
  args = p.parse_args(argv)
  names = [n for n, _ in args.runs]
  if len(set(names)) != len(names):
    p.error(f"--runs names repeat: {names}")
  if args.nboot < 1 or not 0 < args.confidence < 1:
    p.error("need --nboot >= 1 and 0 < --confidence < 1")
  if args.target is not None and not 0 < args.target < 1:
    p.error(f"--target={args.target}: a held-out MLM accuracy in (0, 1)")
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  arms = {name: read_arm(name, pattern) for name, pattern in args.runs}
  target = _target(args.target, arms)
  rep = summarize(arms, target, args.nboot, args.seed, args.confidence)
  if args.plot:
    plot(arms, target, os.path.expanduser(args.plot), args.axis)
    rep["plot"] = args.plot
  print(json.dumps(rep, indent=1) if args.json else format_report(rep))
  return rep


def run() -> None:
  try:
    main()
  except (ValueError, ImportError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  run()
