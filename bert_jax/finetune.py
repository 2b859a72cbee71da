r"""Command line of classification / regression fine-tuning.

  python -m bert_jax.finetune --config.init_checkpoint=RUN \
      --config.task_dir=glue/MRPC --config.output_dir=out/mrpc/seed_3/ft_0 \
      --config.text_a='#1 String' --config.text_b='#2 String' \
      --config.label=Quality --config.metric=f1 --config.seed=0
  # all options: configs/finetune.py (the default --config)

What it does and writes: `bert_jax.downstream.finetune`.
"""

import json
import os

from absl import app

from bert_jax.conversion import interop
from bert_jax.downstream import finetune
from bert_jax.downstream import tasks
from data_prep import cli


def main(argv):
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  allocator.configure()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}; options are "
                         "--config.<field>=value.")
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    result = finetune.finetune(flags.FLAGS.config)
  except (tasks.TaskError, interop.InteropError, ValueError) as e:
    raise app.UsageError(str(e)) from e
  print(json.dumps({k: result[k] for k in (
      "task", "metric", "final", "steps", "seconds", "output_dir", "files")}))


def _define_flags() -> None:
  """Defined on use, not at import, so that importing this module next to
  others that define `--config` (bert_jax.main) does not clash."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  if "config" not in flags.FLAGS:
    import configs  # pylint: disable=g-import-not-at-top
    default = os.path.join(configs.DIR, "finetune.py")
    config_flags.DEFINE_config_file("config", default, "Fine-tuning config "
                                    "(configs/finetune.py).",
                                    lock_config=True)


def run():
  _define_flags()
  cli.run(main, errors=(ValueError, OSError))


if __name__ == "__main__":
  run()
