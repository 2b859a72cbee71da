r"""Pretrain BERT: `python -m bert_jax.main --config=configs/bert.py:base
--workdir=DIR [--config.phase1.train_files=...]`. Restart the same command to
resume from the latest checkpoint."""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and logs.")
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distributed(jax) -> None:
  """Multi-process runs: JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES and
  JAX_PROCESS_ID where the cluster is not auto-detected, e.g. Kubernetes
  indexed jobs or local processes), SLURM, or a TPU pod."""
  env = os.environ
  if not (env.get("JAX_COORDINATOR_ADDRESS") or env.get("SLURM_JOB_ID") or
          env.get("TPU_WORKER_HOSTNAMES")):
    return
  kwargs = {}
  if env.get("JAX_NUM_PROCESSES"):
    kwargs = {"num_processes": int(env["JAX_NUM_PROCESSES"]),
              "process_id": int(env.get("JAX_PROCESS_ID", "-1"))}
    if kwargs["process_id"] < 0:
      raise app.UsageError("JAX_NUM_PROCESSES is set: set JAX_PROCESS_ID too.")
  jax.distributed.initialize(**kwargs)


def main(argv):
  del argv
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  allocator.configure()
  import jax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for kind in ("GPU", "TPU"):  # TF only feeds data: keep accelerators for JAX
    try:
      tf.config.set_visible_devices([], kind)
    except (ValueError, RuntimeError):
      pass
  _initialize_distributed(jax)
  logging.info("JAX processes %d, devices %d (%s)", jax.process_count(),
               jax.device_count(), jax.devices()[0].platform)
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
