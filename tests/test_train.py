"""Two-phase training end to end on 8 CPU devices: resume, meshes, errors."""

import os

import jax
import numpy as np
import pytest

from bert_jax import checkpointing
from bert_jax import flops
from bert_jax import history
from bert_jax import models
from bert_jax import settings
from bert_jax import train
from bert_jax import train_step
from configs import bert as bert_config
from data_prep import job
from data_prep import pipeline
import tiny


@pytest.fixture(scope="module")
def data(tmp_path_factory, vocab_file, tiny_shards, short_docs_corpus):
  """Phase 1: seq 32 (full rows, conftest's `tiny_shards`); phase 2: seq 64
  from short documents, trained packed (`_config`)."""
  d = str(tmp_path_factory.mktemp("p2"))
  cfg = pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=64,
                            max_predictions_per_seq=10, dupe_factor=1,
                            eval_fraction=0.1)
  job.generate(cfg, [short_docs_corpus], job.Outputs(output_dir=d,
                                                     num_shards=2))
  return {"p1": tiny_shards, "p2": d}


def _config(data, **over):
  c = bert_config.get_config("tiny")
  c.model.hidden_size = 32
  c.model.num_attention_heads = 2
  c.model.intermediate_size = 64
  c.model.max_position_embeddings = 64
  for i, (name, steps, seq, preds) in enumerate(
      (("p1", 6, 32, 5), ("p2", 4, 64, 10)), start=1):
    p = c[f"phase{i}"]
    p.train_files = os.path.join(data[name], "train-*")
    p.eval_files = os.path.join(data[name], "eval-*")
    p.max_seq_length, p.max_predictions_per_seq = seq, preds
    p.global_batch_size = 16
    p.num_steps, p.warmup_steps = steps, 2
  c.phase1.learning_rate = c.phase2.learning_rate = 1e-3
  c.phase2.packing = 3  # packed phase 2 (its resume is tested below)
  c.checkpoint.save_every = 2
  c.checkpoint.keep_forever = ((4, 4),)
  c.checkpoint.async_save = False
  c.log_every = 1
  c.eval_batch_size, c.eval_steps = 8, 2
  # Phase 1: after step 4 (64 examples); packed phase 2: after each step
  # whose examples cross a multiple of 64.
  c.eval_every_examples = 64
  c.shuffle_buffer = 100
  for k, v in over.items():
    node = c
    *path, leaf = k.split(".")
    for part in path:
      node = node[part]
    node[leaf] = v
  return c


def _final_params(workdir, config):
  ckpt = checkpointing.Checkpointer(workdir, 1, 10)
  step = ckpt.latest_step()
  state, meta = ckpt.restore_arrays(step)
  ckpt.close()
  return step, meta, state["params"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data):
  workdir = str(tmp_path_factory.mktemp("full"))
  return workdir, train.train_and_evaluate(_config(data), workdir)


def test_two_phases_end_to_end(full_run, data):
  workdir, result = full_run
  assert [m["step"] for m in result["train"]] == [7, 8, 9, 10]
  for m in result["train"]:  # packed: more examples than rows per step
    assert m["seq_per_s"] > 1.5 * m["tokens_per_s"] / 64
    assert m["real_token_fraction"] > 0.6
  assert result["eval"]["eval_mlm_loss"] > 0
  assert 0 <= result["eval"]["eval_mlm_accuracy"] <= 1
  step, meta, _ = _final_params(workdir, _config(data))
  assert (step, meta["phase"], meta["phase_step"]) == (10, 1, 4)
  ckpt = checkpointing.Checkpointer(workdir, 2, 2, [0, 4])
  assert 4 in ckpt.all_steps()  # kept forever
  ckpt.close()
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  # Every evaluation is a line of evals.jsonl, with the examples seen: 16
  # per phase-1 step, more per packed phase-2 row (counted).
  evals, target = history.read(workdir)
  assert [(e["step"], e["phase"], e["examples"]) for e in evals[:2]] == [
      (4, "phase1", 64), (6, "phase1", 96)]
  mid = evals[2:-1]
  assert mid and all(e["phase"] == "phase2" for e in mid)
  assert [e["step"] for e in result["evals"]] == [e["step"] for e in mid]
  crossings = [96 // 64] + [e["examples"] // 64 for e in mid]
  assert crossings == sorted(set(crossings))  # one evaluation per crossing
  assert evals[-1]["step"] == 10 and evals[-1]["examples"] > 96 + 4 * 16 * 1.5
  assert evals[-1]["eval_mlm_accuracy"] == result["eval"]["eval_mlm_accuracy"]
  assert target is None and meta["examples"] == evals[-1]["examples"]


@pytest.mark.parametrize("stop_at", [8])
def test_interrupted_run_resumes_bitwise(tmp_path, data, full_run,
                                         monkeypatch, stop_at):
  """Stopped (SIGTERM path) in phase 2 (step 8, packed rows: the resumed
  packer must replay the skipped batches; phase 1 stops are covered by real
  SIGTERM/SIGKILL in test_faults.py), restarted: the same parameters, bit
  for bit, as the uninterrupted run."""
  config = _config(data)
  cut = str(tmp_path / "cut")
  real = checkpointing.Checkpointer.should_stop
  monkeypatch.setattr(checkpointing.Checkpointer, "should_stop",
                      lambda self, step: step == stop_at or real(self, step))
  assert train.train_and_evaluate(config, cut)["stopped"]
  monkeypatch.setattr(checkpointing.Checkpointer, "should_stop", real)
  ckpt = checkpointing.Checkpointer(cut, 1, 10)
  assert ckpt.latest_step() == stop_at
  ckpt.close()
  # As if killed after an evaluation past the checkpoint: the resumed run
  # drops it (and a target.json the checkpoint does not hold).
  with open(os.path.join(cut, history.EVALS), "a") as f:
    f.write('{"step": 9, "eval_mlm_accuracy": 1.0}\n')
  with open(os.path.join(cut, history.TARGET), "w") as f:
    f.write('{"step": 9}')
  resumed = train.train_and_evaluate(config, cut)
  assert [m["step"] for m in resumed["train"]] == [
      s for s in (7, 8, 9, 10) if s > stop_at]
  _, _, want = _final_params(full_run[0], config)
  _, _, got = _final_params(cut, config)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The same history: steps, examples seen (packed, across the resume) and
  # held-out results.
  keys = ("step", "examples", "eval_mlm_accuracy", "eval_mlm_loss")
  strip = lambda evals: [{k: e[k] for k in keys} for e in evals]
  got_evals, got_target = history.read(cut)
  assert strip(got_evals) == strip(history.read(full_run[0])[0])
  assert got_target is None


def test_bad_configs(tmp_path, data):
  with pytest.raises(ValueError, match="divisible by the data-parallel size 8"):
    train.train_and_evaluate(_config(data, **{"phase1.global_batch_size": 12}),
                             str(tmp_path / "a"))
  with pytest.raises(ValueError, match="exceeds model.max_position_embeddings"):
    train.train_and_evaluate(_config(data, **{"model.max_position_embeddings": 32}),
                             str(tmp_path / "b"))
  with pytest.raises(ValueError, match="max_seq_length is 32 in the data"):
    train.train_and_evaluate(_config(data, **{"phase1.max_seq_length": 48}),
                             str(tmp_path / "c"))


def test_keep_forever_rule_and_flops():
  assert checkpointing.keep_forever_steps(
      [[200_000, 20_000], [2_000_000, 100_000]], 2_000_000) == (
          list(range(0, 200_001, 20_000)) + list(range(300_000, 2_000_001,
                                                       100_000)))
  cfg = models.BertConfig()  # BERT-Base
  f = flops.forward_flops_per_sequence(cfg, 128, 20)
  per_layer = 2 * 128 * 768 * 3072 + 2 * 2 * 128 * 128 * 768 + 2 * 2 * 128 * 768 * 3072
  assert f == 12 * per_layer + 2 * 768 * 768 + 2 * 20 * 768 * (768 + 30522) + 4 * 768
  assert flops.training_flops_per_sequence(cfg, 128, 20) == 3 * f


def test_gradient_accumulation_equals_the_large_batch():
  """One update from 4 micro-batches of 4 == one update from the batch of 16."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from bert_jax import optim  # pylint: disable=g-import-not-at-top
  cfg = tiny.model(num_hidden_layers=1, max_position_embeddings=16)
  model = models.BertForPreTraining(cfg)
  rng = np.random.default_rng(0)
  batch = {"input_ids": rng.integers(5, 97, (16, 16)),
           "input_mask": np.ones((16, 16)),
           "segment_ids": np.zeros((16, 16)),
           "masked_lm_positions": rng.integers(1, 16, (16, 3)),
           "masked_lm_ids": rng.integers(5, 97, (16, 3)),
           "masked_lm_weights": np.ones((16, 3)),
           "next_sentence_labels": rng.integers(0, 2, (16, 1))}
  batch = {k: jnp.asarray(v, jnp.float32 if k == "masked_lm_weights"
                          else jnp.int32) for k, v in batch.items()}
  params = nn.unbox(model.init(jax.random.PRNGKey(0), batch["input_ids"],
                               batch["input_mask"], batch["segment_ids"],
                               batch["masked_lm_positions"])["params"])
  tx = optim.lamb(1e-3)
  outs = []
  for accum in (1, 4):
    state = {"params": params, "opt_state": tx.init(params),
             "global_step": jnp.asarray(0, jnp.int32)}
    new, metrics = jax.jit(train_step.make_train_step(model, tx, accum, 0))(
        state, batch)
    outs.append((new["params"], metrics))
  # Equal-size micro-batches with equal mask counts: the mean of the
  # micro-batch gradients is the large-batch gradient.
  for a, b in zip(jax.tree_util.tree_leaves(outs[0][0]),
                  jax.tree_util.tree_leaves(outs[1][0])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outs[0][1]["loss"], outs[1][1]["loss"], rtol=1e-5)


def test_a_finished_run_extends_its_last_phase_or_refuses(full_run, data,
                                                          tmp_path):
  """Rerun with more phase-2 steps: the extra steps train from step 10;
  more phase-1 steps (a finished phase) or another batch are refused."""
  import shutil  # pylint: disable=g-import-not-at-top
  from bert_jax import settings  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "w")
  shutil.copytree(full_run[0], workdir)
  with pytest.raises(settings.ConfigError) as e:
    train.train_and_evaluate(_config(data, **{
        "phase1.num_steps": 7, "phase2.global_batch_size": 8}), workdir)
  assert "phase1.num_steps was 6, now 7 (that phase is finished)" in str(e.value)
  assert "phase2.global_batch_size was 16, now 8" in str(e.value)
  result = train.train_and_evaluate(_config(data, **{"phase2.num_steps": 6}),
                                    workdir)
  assert [m["step"] for m in result["train"]] == [11, 12]


def test_restore_on_another_mesh(full_run, data):
  """A checkpoint written on an 8-way data-parallel mesh restores into a
  2×2×2 (data, fsdp, tensor) mesh with the same values."""
  from bert_jax import sharding  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  workdir, _ = full_run
  config = _config(data)
  _, _, want = _final_params(workdir, config)
  mesh = sharding.create_mesh(2, 2, 2)
  model = models.BertForPreTraining(models.BertConfig(**config.model.to_dict()))
  s = settings.read(config)
  phase = s.phases[-1]
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    params, _ = train._init_params(model, phase, mesh, 0)  # pylint: disable=protected-access
    tx = train.make_optimizer(s.optimizer, phase, 0)
    state = {"params": params, "opt_state": jax.jit(tx.init)(params),
             "global_step": jax.numpy.asarray(0, jax.numpy.int32)}
    ckpt = checkpointing.Checkpointer(workdir, 1, 10)
    got, meta = ckpt.restore(10, train._abstract(state))  # pylint: disable=protected-access
    ckpt.close()
  assert meta["phase"] == 1
  q = models.flat_param_names(got["params"])[
      "bert/encoder/layer_0/attention/self/query/kernel"]
  assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  for a, b in zip(jax.tree_util.tree_leaves(got["params"]),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _opt_counts(workdir, config):
  ckpt = checkpointing.Checkpointer(workdir, 1, 10)
  state, _ = ckpt.restore_arrays(ckpt.latest_step())
  ckpt.close()
  return {int(v) for path, v in jax.tree_util.tree_flatten_with_path(
      state["opt_state"])[0] if "count" in jax.tree_util.keystr(path)}


def test_phase2_optimizer_restarts_or_carries(tmp_path, data, full_run):
  """Default: phase 2 starts a fresh optimizer (its counters end at 4 =
  phase 2's steps); with carry_optimizer_state they continue to 10."""
  assert _opt_counts(full_run[0], _config(data)) == {4}
  config = _config(data, **{"phase2.carry_optimizer_state": True})
  train.train_and_evaluate(config, str(tmp_path))
  assert _opt_counts(str(tmp_path), config) == {10}


def test_adamw_and_the_phase_schedule_drive_training(data, tmp_path):
  """optimizer.name=adamw trains; the logged rate follows phaseN.schedule
  (wsd: warm-up 2, stable, the last half decaying); a bad schedule is
  refused before any step, naming the field."""
  c = _config(data, **{"optimizer.name": "adamw", "phase1.num_steps": 0,
                       "phase2.schedule": "wsd", "phase2.decay_fraction": 0.5})
  result = train.train_and_evaluate(c, str(tmp_path / "w"))
  np.testing.assert_allclose([m["learning_rate"] for m in result["train"]],
                             [0, 5e-4, 1e-3, 5e-4], rtol=1e-6)
  assert np.isfinite(result["eval"]["eval_mlm_loss"])
  c.phase2.schedule = "cosine"
  with pytest.raises(ValueError, match=r"phase2.schedule='cosine'"):
    train.train_and_evaluate(c, str(tmp_path / "bad"))


def test_time_to_target_accuracy_stops_there_and_is_remembered(data, tmp_path):
  """target_mlm_accuracy: the first evaluation at or above it is logged with
  its step and training time; stop_at_target ends training there (the
  checkpoint records it); rerun, the finished run does nothing more."""
  over = {"phase2.num_steps": 0, "eval_every": 2, "eval_every_examples": 0,
          "phase1.learning_rate": 1e-2, "optimizer.name": "adamw"}
  free = train.train_and_evaluate(_config(data, **over), str(tmp_path / "f"))
  accs = [e["eval_mlm_accuracy"] for e in free["evals"]]  # steps 2 and 4
  assert max(accs) > 0 and "target" not in free
  first = 2 * (1 + accs.index(max(accs)))
  times = [e["train_time_s"] for e in free["evals"]]
  assert 0 < times[0] < times[1] < free["train_time_s"]
  config = _config(data, **over, target_mlm_accuracy=max(accs),
                   stop_at_target=True)
  run = str(tmp_path / "t")
  result = train.train_and_evaluate(config, run)
  assert result["target"]["step"] == first
  assert result["target"]["mlm_accuracy"] == max(accs)
  assert [m["step"] for m in result["train"]][-1] <= first
  step, meta, _ = _final_params(run, config)
  assert step == first and meta["target"]["step"] == first
  evals, target = history.read(run)
  assert target == result["target"] and target["examples"] == first * 16
  assert [e["step"] for e in evals] == list(range(2, first + 1, 2))
  again = train.train_and_evaluate(config, run)
  assert again["target"] == result["target"] and "train" not in again
  with pytest.raises(ValueError, match="no phase has held-out data"):
    train.train_and_evaluate(
        _config(data, **over, target_mlm_accuracy=0.5,
                **{"phase1.eval_files": ""}), str(tmp_path / "x"))
