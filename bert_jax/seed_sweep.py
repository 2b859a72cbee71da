r"""Pretrain one config under N seeds, MultiBERTs-style, and export them.

    python -m bert_jax.seed_sweep --config=configs/multiberts.py \
        --sweep_dir=runs/mb --seeds=0-4 [--mode=local|print|slurm] \
        [--export_hf] -- --config.phase1.train_files='data/seq512/train-*'

Seed K trains in `SWEEP_DIR/seed_K` with `--config.seed=K` (initialisation,
dropout and data order; see configs/bert.py) plus the arguments after `--`.
`local` runs the seeds one after another on this machine (rerunning resumes
each; a finished one only repeats its final evaluation); `print` prints one command per seed for any
scheduler; `slurm` submits one `launch/gpu/slurm.sbatch` job per seed.
`--export_hf` writes every kept checkpoint of every finished seed to
`SWEEP_DIR/seed_K/hf/step_<N>` (MultiBERTs naming: `step_20k`), skipping
exports that already exist; `--mode=export` only exports (after cluster runs).
`local` and `export` print a JSON report: per seed its final held-out MLM
accuracy and, with `--config.target_mlm_accuracy`, when it reached the target;
then time to target and final accuracy over the seeds with bootstrap intervals
(`bert_jax.stats.time_to_target`, which also compares sweeps and plots them).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from absl import app
from absl import flags
from absl import logging

from data_prep import cli
from data_prep import fileio

_CONFIG = flags.DEFINE_string("config", None, "Config file[:arg], as for "
                              "bert_jax.main.")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "One seed_K dir per seed.")
_SEEDS = flags.DEFINE_string("seeds", "0-4", "Seeds: '0-24', '0,3,7' or both.")
_MODE = flags.DEFINE_enum("mode", "local", ["local", "print", "slurm", "export"],
                          "How to run the seeds.")
_EXPORT_HF = flags.DEFINE_bool("export_hf", False, "Export every kept "
                               "checkpoint to transformers format.")
_HEADS = flags.DEFINE_bool("export_heads", True, "Keep the heads in exports "
                           "(BertForPreTraining; BertForMaskedLM for an "
                           "MLM-only run); False: the encoder only.")


def parse_seeds(spec: str) -> list[int]:
  seeds: list[int] = []
  try:
    for part in filter(None, (p.strip() for p in spec.split(","))):
      lo, _, hi = part.partition("-")
      seeds.extend(range(int(lo), int(hi or lo) + 1))
  except ValueError as e:
    raise app.UsageError(f"--seeds={spec!r}: use e.g. 0-24 or 0,3,7.") from e
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise app.UsageError(f"--seeds={spec!r}: non-negative, no repeats.")
  return seeds


def seed_dir(sweep_dir: str, seed: int) -> str:
  return os.path.join(sweep_dir, f"seed_{seed}")


def train_command(config: str, sweep_dir: str, seed: int,
                  extra: list[str]) -> list[str]:
  return [sys.executable, "-m", "bert_jax.main", f"--config={config}",
          f"--workdir={seed_dir(sweep_dir, seed)}", f"--config.seed={seed}",
          *extra]


def step_name(step: int) -> str:
  return f"step_{step // 1000}k" if step % 1000 == 0 else f"step_{step}"


def export_seed(workdir: str, heads: str = "auto") -> list[str]:
  """Every kept checkpoint of one run → `workdir/hf/step_*`; returns the
  directories written (existing exports are kept)."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  from bert_jax.conversion import releases  # pylint: disable=g-import-not-at-top
  from bert_jax import runs  # pylint: disable=g-import-not-at-top
  written = []
  for step in runs.list_steps(workdir):
    out = epath.Path(workdir) / "hf" / step_name(step)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
      continue
    releases.export_run(workdir, step, str(out), heads=heads)
    written.append(str(out))
  return written


_PATH_OVERRIDE = re.compile(
    r"^(--config\.(?:phase\d\.(?:train|eval)_files|init_from)=)(.*)$")


def _resolved(arg: str) -> str:
  """A data or init_from override made absolute, so that the commands work
  from any directory (a scheduler's, or `--mode=print` pasted elsewhere)."""
  m = _PATH_OVERRIDE.match(arg)
  return m.group(1) + fileio.resolve_list(m.group(2)) if m else arg


def seed_results(workdirs: dict[int, str]) -> dict:
  """Per seed (workdir with an evals.jsonl), its final held-out accuracy
  and target record; over the seeds, `time_to_target.summarize` when every
  seed has evaluations and the runs name a target."""
  from bert_jax import history  # pylint: disable=g-import-not-at-top
  from bert_jax.stats import time_to_target  # pylint: disable=g-import-not-at-top
  per_seed, runs = {}, []
  for seed, workdir in workdirs.items():
    evals, target = history.read(workdir)
    if evals:
      per_seed[seed] = {"final_mlm_accuracy": evals[-1]["eval_mlm_accuracy"],
                        "train_time_s": evals[-1]["train_time_s"],
                        "target": target}
      runs.append(time_to_target.Run(workdir, seed, evals, target))
  out = {"per_seed": per_seed}
  targets = {r.target_record["target"] for r in runs if r.target_record}
  if runs and len(runs) == len(workdirs) and len(targets) <= 1:
    target = targets.pop() if targets else None
    if target is None:  # no run reached it, or none was set
      from bert_jax import runs as runs_lib  # pylint: disable=g-import-not-at-top
      target = runs_lib.open_run(runs[0].workdir).meta.config_dict.get(
          "target_mlm_accuracy") or None
    if target:
      out["summary"] = time_to_target.summarize({"sweep": runs}, target)
      logging.info("Over the seeds:\n%s", time_to_target.format_report(
          out["summary"]))
  return out


def main(argv):
  extra = [_resolved(a) for a in argv[1:]]
  if not _CONFIG.value and _MODE.value != "export":
    raise app.UsageError("--config is required.")
  if not _SWEEP_DIR.value:
    raise app.UsageError("--sweep_dir is required.")
  seeds = parse_seeds(_SEEDS.value)
  sweep_dir = fileio.resolve(_SWEEP_DIR.value)
  config = _CONFIG.value
  if config and not fileio.is_remote(config):  # path[:argument]
    path, colon, arg = config.partition(":")
    config = fileio.resolve(path) + colon + arg
  report = {"seeds": seeds, "runs": {}}
  for seed in seeds:
    cmd = train_command(config, sweep_dir, seed, extra)
    if _MODE.value == "print":
      print(shlex.join(["python", *cmd[1:]]))
      continue
    if _MODE.value == "slurm":
      env = {**os.environ, "WORKDIR": seed_dir(sweep_dir, seed),
             "CONFIG": config}
      sbatch = ["sbatch", f"--job-name=bert_jax-seed_{seed}",
                "launch/gpu/slurm.sbatch", f"--config.seed={seed}", *extra]
      logging.info("seed %d: %s", seed, shlex.join(sbatch))
      subprocess.run(sbatch, check=True, env=env)
      continue
    if _MODE.value == "local":
      logging.info("seed %d: %s", seed, shlex.join(cmd))
      proc = subprocess.run(cmd, check=False)
      if proc.returncode:
        why = ("was stopped and saved" if proc.returncode == 75 else
               f"failed (exit {proc.returncode})")
        raise app.UsageError(f"seed {seed} {why}; rerun the same command to "
                             "resume it.")
    run = {"workdir": seed_dir(sweep_dir, seed)}
    if _EXPORT_HF.value:
      run["exported"] = export_seed(
          run["workdir"], "auto" if _HEADS.value else "none")
    report["runs"][seed] = run
  if _MODE.value in ("local", "export"):
    report["held_out"] = seed_results(
        {seed: seed_dir(sweep_dir, seed) for seed in seeds})
    print(json.dumps(report, indent=1))


def run():
  cli.run(main, errors=(ValueError, OSError))


if __name__ == "__main__":
  run()
