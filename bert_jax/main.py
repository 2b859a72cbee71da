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


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for kind in ("GPU", "TPU"):  # TF only feeds data: keep accelerators for JAX
    try:
      tf.config.set_visible_devices([], kind)
    except (ValueError, RuntimeError):
      pass
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get(
      "SLURM_JOB_ID") or os.environ.get("TPU_WORKER_HOSTNAMES"):
    jax.distributed.initialize()
  logging.info("JAX processes %d, devices %d (%s)", jax.process_count(),
               jax.device_count(), jax.devices()[0].platform)
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
