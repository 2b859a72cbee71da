r"""Pretrain BERT: `python -m bert_jax.main --config=bert:base --workdir=DIR
[--config.phase1.train_files=...]`. Restart the same command to resume from
the latest checkpoint. `--config` takes a recipe shipped in configs/ (`bert`,
`fast`, `demo`, `multiberts`; `configs/bert.py` works too) or a path of your
own. A run stopped by SIGTERM or Ctrl-C saves and exits with code 75
(`checkpointing.PREEMPTED_EXIT_CODE`): requeue on it."""

import os
import sys

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


def config_value():
  """The parsed `--config`, its loading failure as a one-line usage error."""
  try:
    return _CONFIG.value
  except (OSError, ValueError, TypeError, AttributeError, KeyError,
          SyntaxError, ImportError) as e:
    cause = str(e).split("\n")
    raise app.UsageError(
        f"--config={flags.FLAGS['config'].serialize().split('=', 1)[-1]}: "
        + " ".join(l.strip() for l in cause[-2:] if l.strip())) from e


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}; options are "
                         "--config=..., --config.<field>=value, --workdir=...")
  config = config_value()
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
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  logging.info("Config %s%s", flags.FLAGS["config"].serialize(),
               "; overrides: " + " ".join(overrides) if overrides else "")
  logging.debug("Resolved config:\n%s", config)
  from bert_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  if train.train_and_evaluate(config, _WORKDIR.value).get("stopped"):
    sys.exit(checkpointing.PREEMPTED_EXIT_CODE)


def _parse(argv):
  import configs  # pylint: disable=g-import-not-at-top
  from data_prep import cli  # pylint: disable=g-import-not-at-top
  for i, a in enumerate(argv):  # --config=bert, configs/bert.py: the recipes
    if a.startswith("--config="):
      try:
        argv[i] = "--config=" + configs.resolve(a[len("--config="):])
      except FileNotFoundError as e:
        cli.fail(str(e), cli.USAGE_EXIT, argv)
  return cli.parse_flags(argv)


def run():
  from data_prep import cli  # pylint: disable=g-import-not-at-top
  # DataError, ConfigError, RunError are ValueErrors; CheckpointError an
  # OSError.
  cli.run(main, errors=(OSError, ValueError, FloatingPointError),
          flags_parser=_parse)


if __name__ == "__main__":
  run()
