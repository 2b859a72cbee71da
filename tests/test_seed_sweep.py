"""Seed studies: what each seed controls, the sweep driver and its exports."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import transformers

from bert_jax import runs
from bert_jax import seed_sweep
from bert_jax import train
from configs import bert as bert_config
from configs import multiberts
import tiny

ROOT = pathlib.Path(__file__).resolve().parent.parent

CHECKPOINT = dict(save_every=100, keep_forever=((2, 2),), async_save=False)
CONFIG_LINES = (f"c.checkpoint.update(**{CHECKPOINT})",)


@pytest.fixture(scope="module")
def data(tiny_shards):
  return tiny_shards


def _config(data, **seeds):
  c = tiny.config(f"{data}/train-*", 3)
  c.checkpoint.update(**CHECKPOINT)
  c.update(seeds)
  return c


def _leaves(workdir, step):
  params = runs.open_run(workdir, step).params()
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_init_and_data_seeds_are_independent(data, tmp_path):
  leaves = {}
  for name, seeds in {"base": {"seed": 0}, "data1": {"data_seed": 1},
                      "init1": {"init_seed": 1}}.items():
    workdir = str(tmp_path / name)
    train.train_and_evaluate(_config(data, **seeds), workdir)
    leaves[name] = (_leaves(workdir, 0), _leaves(workdir, 3))
  # Step 0 is the initialisation, kept like MultiBERTs' step_0k.
  assert _same(leaves["base"][0], leaves["data1"][0])  # same init...
  assert not _same(leaves["base"][1], leaves["data1"][1])  # ...other data
  assert not _same(leaves["base"][0], leaves["init1"][0])  # other init


def test_multiberts_recipe():
  c = multiberts.get_config("7")
  assert c.seed == 7 and c.model.num_hidden_layers == 12
  assert (c.phase1.max_seq_length, c.phase1.global_batch_size,
          c.phase1.num_steps, c.phase1.warmup_steps,
          c.phase1.learning_rate) == (512, 256, 2_000_000, 10_000, 1e-4)
  assert c.phase2.num_steps == 0 and c.optimizer.name == "adamw_google"
  from bert_jax import checkpointing  # pylint: disable=g-import-not-at-top
  kept = checkpointing.keep_forever_steps(c.checkpoint.keep_forever, 2_000_000)
  assert len(kept) == 29 and kept[:3] == [0, 20_000, 40_000]
  assert kept[-2:] == [1_900_000, 2_000_000]
  assert [seed_sweep.step_name(s) for s in (0, 20_000, 1_500)] == [
      "step_0k", "step_20k", "step_1500"]
  with pytest.raises(ValueError, match="the argument is the seed"):
    multiberts.get_config("base")
  assert bert_config.get_config().init_seed == -1


def test_sweep_trains_each_seed_and_exports_every_kept_checkpoint(data,
                                                                  tmp_path):
  config = tmp_path / "sweep_config.py"
  config.write_text(tiny.config_text(data, 3, 8, *CONFIG_LINES))
  sweep = tmp_path / "sweep"
  args = [sys.executable, "-m", "bert_jax.seed_sweep", f"--config={config}",
          f"--sweep_dir={sweep}", "--seeds=0-1"]
  printed = subprocess.run(args + ["--mode=print", "--",
                                   "--config.phase1.learning_rate=1e-3"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
  lines = printed.stdout.strip().splitlines()
  assert len(lines) == 2 and "--config.seed=1" in lines[1]
  assert lines[1].endswith("--config.phase1.learning_rate=1e-3")
  assert not sweep.exists()
  proc = subprocess.run(args + [
      "--export_hf", "--", f"--config.phase1.eval_files={data}/eval-*",
      "--config.eval_every=1", "--config.eval_steps=1",
      "--config.eval_batch_size=8", "--config.target_mlm_accuracy=0.99"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout[proc.stdout.index("{"):])
  # Held-out results per seed, and over the seeds (nobody reaches 0.99).
  held = report["held_out"]
  assert sorted(held["per_seed"]) == ["0", "1"]
  assert all(r["target"] is None for r in held["per_seed"].values())
  arm = held["summary"]["arms"]["sweep"]
  assert arm["seeds"] == [0, 1] and arm["reached"] == 0
  assert arm["final_mlm_accuracy"]["mean"] == pytest.approx(np.mean(
      [r["final_mlm_accuracy"] for r in held["per_seed"].values()]))
  assert "0 of 2 reached the target" in proc.stderr
  for seed in ("0", "1"):
    exported = sorted(pathlib.Path(p).name for p in report["runs"][seed][
        "exported"])
    assert exported == ["step_0k", "step_2", "step_3"]  # init, kept, final
  hf = sweep / "seed_1" / "hf"
  model = transformers.BertForPreTraining.from_pretrained(hf / "step_0k")
  assert model.config.hidden_size == 32
  assert not _same(_leaves(str(sweep / "seed_0"), 0),
                   _leaves(str(sweep / "seed_1"), 0))
  with pytest.raises(Exception):
    seed_sweep.parse_seeds("3-x")
  assert seed_sweep.parse_seeds("0-2,5") == [0, 1, 2, 5]
