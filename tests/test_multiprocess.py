"""Two JAX processes over loopback equal one process with the same devices.

Each process has 4 CPU devices and reads only its own input stream (its own
files); the single-process run has all 8 devices and reads both streams. The
losses at every step, the held-out evaluation and the final checkpoint must
agree.
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from bert_jax import checkpointing
from bert_jax.runs import open_run
from data_prep import job
from data_prep import pipeline
import tiny

ROOT = pathlib.Path(__file__).resolve().parent.parent

CONFIG_LINES = (
    'c.phase1.update(eval_files="{data}/eval-*", learning_rate=1e-3)',
    "c.data_streams = 2  # the same global batches for 1 or 2 processes",
    "c.mesh.fsdp = 2  # parameters sharded across the processes' devices",
    "c.checkpoint.update(save_every=2, keep_forever=(), async_save=True)",
    "c.log_every, c.eval_batch_size, c.eval_steps = 1, 8, 2")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(config, workdir, devices, env_extra, flags=()):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_", "SLURM_", "TPU_"))}
  env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu", **env_extra)
  return subprocess.Popen(
      [sys.executable, "-m", "bert_jax.main", f"--config={config}",
       f"--workdir={workdir}", *flags], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs):
  outs = [p.communicate(timeout=400)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  return outs


def _scalars(workdir) -> dict[str, dict[int, float]]:
  out: dict[str, dict[int, float]] = {}
  for f in sorted(pathlib.Path(workdir).glob("events.out.tfevents*")):
    for raw in tf.data.TFRecordDataset(str(f)):
      event = tf.compat.v1.Event.FromString(raw.numpy())
      for v in event.summary.value:
        out.setdefault(v.tag, {})[event.step] = float(
            tf.make_ndarray(v.tensor))
  return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, vocab_file, english_corpus):
  data = tmp_path_factory.mktemp("data")
  job.generate(pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=32,
                                   max_predictions_per_seq=5, dupe_factor=1,
                                   eval_fraction=0.1),
               [english_corpus], job.Outputs(output_dir=str(data),
                                             num_shards=4))
  config = tmp_path_factory.mktemp("cfg") / "mp_config.py"
  config.write_text(tiny.config_text(
      data, 4, 16, *(l.format(data=data) for l in CONFIG_LINES)))
  single = str(tmp_path_factory.mktemp("single"))
  multi = str(tmp_path_factory.mktemp("multi"))
  port = _free_port()
  procs = [_launch(config, single, 8, {})]
  procs += [_launch(config, multi, 4, {
      "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)},
                    flags=["--config.mesh.dcn_data=2"]) for i in range(2)]
  logs = _wait(procs)
  return single, multi, logs


def test_two_processes_equal_one(runs):
  single, multi, logs = runs
  assert "JAX processes 2, devices 8" in logs[1]
  assert "JAX processes 1, devices 8" in logs[0]
  a, b = _scalars(single), _scalars(multi)
  assert sorted(a["loss"]) == [1, 2, 3, 4]
  for tag in ("loss", "mlm_loss", "nsp_loss", "grad_norm", "eval_mlm_loss",
              "eval_nsp_accuracy"):
    np.testing.assert_allclose([a[tag][s] for s in sorted(a[tag])],
                               [b[tag][s] for s in sorted(b[tag])],
                               rtol=2e-5, err_msg=tag)
  ckpts = [checkpointing.Checkpointer(w, read_only=True) for w in runs[:2]]
  assert ckpts[0].all_steps() == ckpts[1].all_steps() == [2, 4]
  ra, rb = (open_run(w) for w in runs[:2])
  assert ra.meta.data_streams == rb.meta.data_streams == 2
  assert ra.meta.records_per_stream == rb.meta.records_per_stream == 32
  pa, pb = ra.params(), rb.params()
  for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=2e-6)
