r"""Convert checkpoints between bert_jax, Hugging Face and Google TF formats.

  python -m bert_jax.convert export_hf --workdir=RUN [--step=N] --output_dir=HF \
      [--heads=mlm|none]
  python -m bert_jax.convert export_tf --workdir=RUN [--step=N] --output_dir=TF
  python -m bert_jax.convert import_hf --hf_dir=HF --workdir=OUT
  python -m bert_jax.convert import_tf --tf_checkpoint=DIR/bert_model.ckpt \
      --bert_config=DIR/bert_config.json --vocab_file=DIR/vocab.txt \
      --workdir=OUT

Exports take any checkpoint of a run (intermediate ones too). Imports write an
Orbax checkpoint (step 0, parameters only) plus the vocab into OUT; start
pretraining or fine-tuning from it with `--config.init_from=OUT` and the model
overrides the command prints.
"""

import json

from absl import app
from absl import flags

from data_prep import cli
from data_prep import fileio

_COMMANDS = ("export_hf", "export_tf", "import_hf", "import_tf")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run to export from, or the "
                               "new workdir an import writes.")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step to export (-1: "
                             "latest).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Export directory.")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "A transformers BERT directory.")
_TF_CHECKPOINT = flags.DEFINE_string("tf_checkpoint", None,
                                     "TF checkpoint prefix (bert_model.ckpt).")
_BERT_CONFIG = flags.DEFINE_string("bert_config", None, "bert_config.json.")
_VOCAB_FILE = flags.DEFINE_string(
    "vocab_file", None, "Vocab to ship or record (default: the run's, or the "
    "HF directory's vocab.txt).")
_LOWER = flags.DEFINE_enum("do_lower_case", "auto", ["auto", "true", "false"],
                           "Tokenizer casing (auto: from the source).")
_HEADS = flags.DEFINE_enum(
    "heads", "auto", ["auto", "pretraining", "mlm", "none"], "export_hf: "
    "BertForPreTraining (MLM and NSP heads), BertForMaskedLM (mlm: no pooler, "
    "no NSP head) or the encoder only (none: BertModel); auto: pretraining, "
    "or mlm for an MLM-only run (model.nsp=False).")
_SEED = flags.DEFINE_integer("seed", 0, "Initialises heads the source lacks.")


def _lower() -> bool | None:
  return None if _LOWER.value == "auto" else _LOWER.value == "true"


def _required(flag, command: str) -> str:
  if not flag.value:
    raise app.UsageError(f"{command} needs --{flag.name}.")
  return fileio.resolve(flag.value)


def main(argv):
  if len(argv) != 2 or argv[1] not in _COMMANDS:
    raise app.UsageError(f"usage: python -m bert_jax.convert "
                         f"{{{'|'.join(_COMMANDS)}}} --flags...")
  command = argv[1]
  workdir = _required(_WORKDIR, command)
  from bert_jax.conversion import releases  # pylint: disable=g-import-not-at-top
  if command.startswith("export"):
    report = releases.export_run(
        workdir, _STEP.value, _required(_OUTPUT_DIR, command),
        kind=command[len("export_"):],
        vocab_file=fileio.resolve(_VOCAB_FILE.value),
        do_lower_case=_lower(), heads=_HEADS.value)
  elif command == "import_hf":
    report = releases.import_hf(_required(_HF_DIR, command), workdir,
                                fileio.resolve(_VOCAB_FILE.value), _lower(),
                                _SEED.value)
  else:
    report = releases.import_tf(
        _required(_TF_CHECKPOINT, command), _required(_BERT_CONFIG, command),
        _required(_VOCAB_FILE, command), workdir, _lower(), _SEED.value)
  print(json.dumps(report, indent=1))


def run():
  cli.run(main, errors=(ValueError, OSError))


if __name__ == "__main__":
  run()
