"""The run contract: records round-trip, older records are told apart by
their fields, and opening a workdir names what is wrong."""

import jax.numpy as jnp
import pytest

from bert_jax import checkpointing
from bert_jax import runs
from configs import bert as bert_config


def test_records_round_trip_and_older_records_are_recognised():
  config = bert_config.get_config("tiny").to_json()
  trained = runs.RunMeta(kind="training", config=config, phase=1,
                         phase_step=7, data_streams=2, train_time_s=3.5,
                         target={"step": 7, "train_time_s": 3.5})
  assert runs.RunMeta.from_json(trained.to_json()) == trained
  assert trained.model_config().hidden_size == 128 and not trained.is_import
  imported = runs.RunMeta(kind="import", config=config, imported_from="x",
                          format="hf", vocab_file="vocab.txt",
                          initialised=("cls_predictions/output_bias",))
  assert runs.RunMeta.from_json(imported.to_json()) == imported
  # Before `kind`: training records had "phase", imports "imported_from".
  assert runs.RunMeta.from_json({"config": config, "phase": 0}).kind == (
      "training")
  assert runs.RunMeta.from_json({"config": config, "imported_from": "x",
                                 "initialised": []}).is_import
  with pytest.raises(runs.RunError, match="not a bert_jax checkpoint"):
    runs.RunMeta.from_json({"config": config})
  with pytest.raises(runs.RunError, match=r"unknown fields \['colour'\]"):
    runs.RunMeta.from_json({"config": config, "phase": 0, "colour": 1})
  with pytest.raises(runs.RunError, match="kind='guess'"):
    runs.RunMeta(kind="guess", config=config)


def test_open_run_finds_steps_and_names_the_field(tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(runs.RunError, match="config.init_from=.*no checkpoints"):
    runs.open_run(workdir, what="config.init_from")
  assert runs.list_steps(workdir) == []
  ckpt = checkpointing.Checkpointer(workdir, async_save=False, keep_last=5)
  meta = runs.RunMeta(kind="training", config="{}")
  for step in (2, 4):
    ckpt.save(step, {"w": jnp.zeros(3)}, meta.to_json(), force=True)
  ckpt.wait()
  ckpt.close()
  assert runs.list_steps(workdir) == [2, 4]
  run = runs.open_run(workdir)
  assert (run.step, run.steps, run.meta) == (4, [2, 4], meta)
  assert runs.open_run(workdir, 2).step == 2
  with pytest.raises(runs.RunError, match=r"--workdir=.*step 3 \(has \[2, 4\]"):
    runs.open_run(workdir, 3)
