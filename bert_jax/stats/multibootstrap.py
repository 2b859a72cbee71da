"""Multi-bootstrap (Sellam et al., "The MultiBERTs", 2021): confidence intervals
and p-values that account for pretraining seeds, fine-tuning runs and the
finite evaluation set at once.

Each bootstrap iteration resamples pretraining seeds (with replacement) and,
nested in the same iteration, one index vector of evaluation examples shared by
every run of both arms; a run is scored on the resampled examples, runs of the
same (seed, arm) are averaged first, then seeds are averaged (duplicates
count). With an integer `rng` the draws come from `np.random.RandomState(rng)`
in the order of the MultiBERTs release's library, so published analyses
reproduce exactly. Per iteration:

  1. seeds (if `sample_seeds`): paired, one `choice(len(common))` draw shared by
     both arms (common seeds sorted); unpaired, the baseline draw, then the
     experiment draw (each over its arm's sorted seeds);
  2. examples (if `sample_examples`): one `choice(n_examples)` draw.

Only numpy is needed; a pandas DataFrame is accepted but pandas is not required.
"""

from collections.abc import Mapping, Sequence
import logging
from typing import Any, Callable, Optional

import numpy as np

ScoreFn = Callable[[Any, Any], float]

_log = logging.getLogger(__name__)


def _as_rng(rng):
  """int -> RandomState(int); None -> fresh RandomState; else used as given."""
  if rng is None:
    return np.random.RandomState()
  if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
    return np.random.RandomState(int(rng))
  if not hasattr(rng, "choice"):
    raise TypeError(f"rng must be an int, None or have .choice(); got {rng!r}")
  return rng


def _draw(rng, n: int) -> np.ndarray:
  # Same RNG consumption as choice(<any length-n sequence>, n, True): with
  # replacement and no p, numpy draws integer indices into the population.
  return np.asarray(rng.choice(n, size=n, replace=True))


def _as_bool(value, row: int) -> bool:
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)) and value in (0, 1):
    return bool(value)
  raise ValueError(f"run_info row {row}: intervention must be a bool, got "
                   f"{value!r}")


def _run_table(run_info) -> tuple[list[Any], list[bool]]:
  """(seeds, interventions) from a DataFrame, dict of columns or list of rows."""
  need = ("seed", "intervention")
  if hasattr(run_info, "columns") and hasattr(run_info, "iloc"):  # pandas
    missing = [c for c in need if c not in run_info.columns]
    columns = None if missing else {c: list(run_info[c]) for c in need}
  elif isinstance(run_info, Mapping):
    missing = [c for c in need if c not in run_info]
    columns = None if missing else {c: list(run_info[c]) for c in need}
    if columns and len(columns["seed"]) != len(columns["intervention"]):
      raise ValueError("run_info columns 'seed' and 'intervention' differ in "
                       "length")
  elif (isinstance(run_info, Sequence) and not isinstance(run_info, str) and
        all(isinstance(r, Mapping) for r in run_info)):
    missing = sorted({c for r in run_info for c in need if c not in r},
                     key=need.index)
    columns = None if missing else {c: [r[c] for r in run_info] for c in need}
  else:
    raise TypeError("run_info must be a DataFrame, a dict of columns or a list "
                    f"of dicts; got {type(run_info).__name__}")
  if missing:
    raise ValueError(f"run_info lacks column(s) {missing}; needs {list(need)}")
  flags = [_as_bool(v, i) for i, v in enumerate(columns["intervention"])]
  return columns["seed"], flags


def _groups(seeds, rows) -> dict[Any, np.ndarray]:
  out: dict[Any, list[int]] = {}
  for i in rows:
    out.setdefault(seeds[i], []).append(i)
  return {s: np.asarray(r) for s, r in out.items()}


def _sorted(keys):
  try:
    return sorted(keys)
  except TypeError as e:
    raise ValueError(f"seeds must be mutually sortable: {e}") from None


def _check_arrays(n_runs, preds, labels, per_example):
  preds = np.asarray(preds, float if per_example else None)
  if preds.ndim < 2 or (per_example and preds.ndim != 2):
    raise ValueError("preds must be [runs, examples]"
                     f"{'' if per_example else '[, ...]'}; got shape "
                     f"{preds.shape}")
  if preds.shape[0] != n_runs:
    raise ValueError(f"preds has {preds.shape[0]} rows but run_info has "
                     f"{n_runs} runs")
  if preds.shape[1] == 0:
    raise ValueError("no examples (preds.shape[1] == 0)")
  if labels is None:
    if not per_example:
      raise ValueError("labels are required unless per_example=True")
  else:
    labels = np.asarray(labels)
    if labels.ndim == 0 or labels.shape[0] != preds.shape[1]:
      raise ValueError(f"labels has shape {labels.shape} but preds has "
                       f"{preds.shape[1]} examples")
  return preds, labels


def _bootstrap(arms, preds, labels, score_fn, per_example, shared_seeds,
               sample_seeds, sample_examples, nboot, rng) -> np.ndarray:
  """[nboot, len(arms)] samples. arms: per arm, one row-index array per seed
  (sorted seed order); shared_seeds: one seed draw serves all arms (paired)."""
  if not isinstance(nboot, (int, np.integer)) or nboot < 1:
    raise ValueError(f"nboot must be a positive int, got {nboot!r}")
  if not per_example and not callable(score_fn):
    raise TypeError("score_fn must be callable(labels, preds) -> float")
  rng = _as_rng(rng)
  n_examples = preds.shape[1]

  def score_rows(rows, jj):
    """Score of each run in `rows` on examples jj (None: all examples)."""
    if per_example:
      p = preds if len(rows) == len(preds) else preds[rows]
      return (p if jj is None else np.take(p, jj, axis=1)).mean(axis=1)
    y = labels if jj is None or labels is None else labels[jj]
    return np.array([float(score_fn(y, preds[i] if jj is None else preds[i, jj]))
                     for i in rows], float)

  all_rows = np.unique(np.concatenate([r for arm in arms for r in arm]))
  scores = np.full(preds.shape[0], np.nan)
  if not sample_examples:  # the scores never change: compute them once
    scores[all_rows] = score_rows(all_rows, None)
  fixed = [np.arange(len(arm)) for arm in arms]
  out = np.empty((nboot, len(arms)))
  for b in range(nboot):
    if not sample_seeds:
      picks = fixed
    elif shared_seeds:
      picks = [_draw(rng, len(arms[0]))] * len(arms)
    else:
      picks = [_draw(rng, len(arm)) for arm in arms]
    if sample_examples:
      jj = _draw(rng, n_examples)
      used = [np.unique(p) for p in picks]
      rows = np.unique(np.concatenate(
          [arm[s] for arm, u in zip(arms, used) for s in u]))
      scores[rows] = score_rows(rows, jj)
    for a, (arm, pick) in enumerate(zip(arms, picks)):
      seed_means = np.full(len(arm), np.nan)
      for s in np.unique(pick):
        seed_means[s] = np.mean(scores[arm[s]])
      out[b, a] = np.mean(seed_means[pick])
  return out


def multibootstrap(run_info, preds, labels, score_fn: Optional[ScoreFn],
                   paired_seeds: bool = False, sample_seeds: bool = True,
                   sample_examples: bool = True, nboot: int = 500, rng=None,
                   per_example: bool = False) -> list[tuple[float, float]]:
  """`nboot` bootstrap samples (L, L') of the baseline and experiment scores.

  Args:
    run_info: one row per run with columns `seed` (hashable, sortable) and
      `intervention` (bool: False = baseline, True = experiment); a pandas
      DataFrame, a dict of equal-length sequences or a list of dicts.
    preds: [runs, examples, ...] predictions, rows aligned with run_info.
    labels: [examples] gold labels (may be None with per_example=True).
    score_fn: score_fn(labels, preds_of_one_run) -> float, called once per run
      per iteration on the resampled examples (any metric, e.g. F1, Pearson).
    paired_seeds: the arms share pretraining seeds (e.g. the same checkpoints
      trained longer): one seed draw serves both; seeds present in one arm only
      are dropped with a warning.
    sample_seeds / sample_examples: resample seeds / evaluation examples.
    nboot: number of bootstrap samples.
    rng: int (-> RandomState(int), reproducible), None (fresh unseeded
      RandomState) or an object with numpy's `.choice` (RandomState/Generator).
    per_example: fast path: preds are per-example scores (e.g. 0/1
      correctness) and a run's score is their mean; score_fn and labels are
      ignored. Identical to score_fn=lambda y, p: np.mean(p), vectorised.
  Returns:
    List of `nboot` (L, L') float tuples.
  """
  seeds, flags = _run_table(run_info)
  preds, labels = _check_arrays(len(seeds), preds, labels, per_example)
  base = _groups(seeds, [i for i, f in enumerate(flags) if not f])
  expt = _groups(seeds, [i for i, f in enumerate(flags) if f])
  if not base:
    raise ValueError("no baseline runs (intervention == False) in run_info")
  if not expt:
    raise ValueError("no experiment runs (intervention == True) in run_info")
  if paired_seeds:
    common = _sorted(set(base) & set(expt))
    if not common:
      raise ValueError("paired_seeds=True but the arms share no seed: "
                       f"baseline {_sorted(base)}, experiment {_sorted(expt)}")
    dropped = _sorted(set(base) ^ set(expt))
    if dropped:
      _log.warning("Paired multi-bootstrap: dropping seeds present in one arm "
                   "only: %s", dropped)
    arms = [[base[s] for s in common], [expt[s] for s in common]]
  else:
    arms = [[base[s] for s in _sorted(base)], [expt[s] for s in _sorted(expt)]]
  out = _bootstrap(arms, preds, labels, score_fn, per_example, paired_seeds,
                   sample_seeds, sample_examples, nboot, rng)
  return [(float(l), float(e)) for l, e in out]


def point_estimate(run_info, preds, labels, score_fn: Optional[ScoreFn],
                   paired_seeds: bool = False,
                   per_example: bool = False) -> tuple[float, float]:
  """(L, L') on all seeds and examples: the mean over seeds of per-seed means."""
  return multibootstrap(run_info, preds, labels, score_fn, paired_seeds,
                        sample_seeds=False, sample_examples=False, nboot=1,
                        rng=0, per_example=per_example)[0]


def bootstrap_arm(seeds: Sequence[Any], preds, labels,
                  score_fn: Optional[ScoreFn], sample_seeds: bool = True,
                  sample_examples: bool = True, nboot: int = 500, rng=None,
                  per_example: bool = False) -> np.ndarray:
  """[nboot] multi-bootstrap samples of a single arm (e.g. one checkpoint of a
  learning curve): `seeds[i]` is the pretraining seed of run i; other arguments
  as in `multibootstrap`. Same draws as multibootstrap's L with paired arms."""
  seeds = list(seeds)
  if not seeds:
    raise ValueError("no runs")
  preds, labels = _check_arrays(len(seeds), preds, labels, per_example)
  groups = _groups(seeds, range(len(seeds)))
  arm = [groups[s] for s in _sorted(groups)]
  return _bootstrap([arm], preds, labels, score_fn, per_example, True,
                    sample_seeds, sample_examples, nboot, rng)[:, 0]


def interval(samples, c: float = 0.95) -> dict[str, float]:
  """{mean, low, high}: the mean of the samples and their central `c`
  percentile interval (np.quantile, linear interpolation)."""
  if not 0 < c < 1:
    raise ValueError(f"confidence c must be in (0, 1), got {c}")
  x = np.asarray(samples, float)
  low, high = np.quantile(x, [(1 - c) / 2, 1 - (1 - c) / 2])
  return {"mean": float(np.mean(x)), "low": float(low), "high": float(high)}


def report_ci(samples, c: float = 0.95, expect_negative_effect: bool = False,
              abs_threshold: Optional[float] = None,
              rel_threshold: Optional[float] = None) -> dict[str, dict]:
  """Confidence intervals and a one-sided p-value from multibootstrap samples.

  Returns {'base': {mean, low, high}, 'expt': {...}, 'delta': {mean, low, high,
  p}} with delta = L' - L per sample; means are means of the samples. p is
  P[delta <= 0] (P[delta >= 0] if expect_negative_effect), floored at 1/nboot.
  With thresholds, 'delta' also holds p_abs_threshold = P[L' >= L + abs] and
  p_rel_threshold = P[(L' - L) / L >= rel] (for a negative effect: P[L' <= L -
  abs] and P[(L' - L) / L <= -rel]; thresholds are magnitudes).
  """
  s = np.asarray(samples, float)
  if s.ndim != 2 or s.shape[1] != 2 or s.shape[0] == 0:
    raise ValueError(f"samples must be a non-empty list of (L, L') pairs; got "
                     f"shape {s.shape}")
  base, expt = s[:, 0], s[:, 1]
  delta = expt - base
  sign = -1.0 if expect_negative_effect else 1.0
  p = float(np.mean(sign * delta <= 0))
  report = {"base": interval(base, c), "expt": interval(expt, c),
            "delta": dict(interval(delta, c), p=max(p, 1.0 / len(s)))}
  if abs_threshold is not None:
    report["delta"]["p_abs_threshold"] = float(
        np.mean(sign * delta >= abs_threshold))
  if rel_threshold is not None:
    with np.errstate(divide="ignore", invalid="ignore"):
      rel = delta / base
    report["delta"]["p_rel_threshold"] = float(
        np.mean(sign * rel >= rel_threshold))
  return report


def format_report(report: dict, c: float = 0.95,
                  expect_negative_effect: bool = False) -> str:
  """Human-readable lines for a report_ci result."""
  pct = f"{100 * c:g}%"
  lines = []
  for key, name in (("base", "baseline   E[L]   "),
                    ("expt", "experiment E[L']  "),
                    ("delta", "delta      E[L'-L]")):
    r = report[key]
    lines.append(f"{name} = {r['mean']:.6f}  {pct} CI ({r['low']:.6f}, "
                 f"{r['high']:.6f})")
  d = report["delta"]
  h0 = "L' >= L" if expect_negative_effect else "L' <= L"
  lines.append(f"one-sided p = {d['p']:.4g}  (H0: {h0})")
  op, sg = ("<=", "-") if expect_negative_effect else (">=", "+")
  if "p_abs_threshold" in d:
    lines.append(f"P[L' {op} L {sg} abs_threshold] = {d['p_abs_threshold']:.4g}")
  if "p_rel_threshold" in d:
    lines.append(f"P[(L'-L)/L {op} {sg.strip('+')}rel_threshold] = "
                 f"{d['p_rel_threshold']:.4g}")
  return "\n".join(lines)
