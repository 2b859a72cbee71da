r"""Convert checkpoints between bert_jax, Hugging Face and Google TF formats.

  python -m bert_jax.convert export_hf --workdir=RUN [--step=N] --output_dir=HF \
      [--heads=none]
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
import os

from absl import app
from absl import flags
from absl import logging

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
    "heads", "pretraining", ["pretraining", "none"], "export_hf: keep the "
    "MLM/NSP heads (BertForPreTraining) or write the encoder only (BertModel).")
_SEED = flags.DEFINE_integer("seed", 0, "Initialises heads the source lacks.")


def _lower(default: bool) -> bool:
  return default if _LOWER.value == "auto" else _LOWER.value == "true"


def export(kind: str, workdir: str, step: int, output_dir: str) -> dict:
  """A run's checkpoint → a transformers directory or a TF-1 checkpoint."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  from bert_jax import interop  # pylint: disable=g-import-not-at-top
  params, cfg, meta, step = interop.load_workdir(workdir, step)
  vocab, lower = interop.vocab_of(workdir, meta)
  vocab = _VOCAB_FILE.value or vocab
  if vocab is None:
    logging.warning("No vocab found for %s (pass --vocab_file); exporting "
                    "weights and config only.", workdir)
  else:
    interop.check_vocab(vocab, cfg)
  lower = _lower(lower)
  if kind == "export_hf":
    files = interop.write_hf(output_dir, params, cfg, vocab, lower,
                             heads=_HEADS.value == "pretraining")
  else:
    out = epath.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    interop.write_tf_checkpoint(str(out / "bert_model.ckpt"), params)
    (out / "bert_config.json").write_text(
        json.dumps(interop.config_to_google(cfg), indent=2) + "\n")
    files = ["bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001",
             "bert_config.json"]
    if vocab:
      (out / os.path.basename(vocab)).write_bytes(
          epath.Path(vocab).read_bytes())
      files.append(os.path.basename(vocab))
  return {"step": step, "output_dir": output_dir, "files": files,
          "do_lower_case": lower}


def import_checkpoint(kind: str, workdir: str) -> dict:
  """An HF directory or a Google TF checkpoint → an Orbax checkpoint."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  from bert_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from bert_jax import interop  # pylint: disable=g-import-not-at-top
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  from configs import bert as bert_config  # pylint: disable=g-import-not-at-top
  if kind == "import_hf":
    src = _required(_HF_DIR, kind)
    hf_config = epath.Path(src) / "config.json"
    if not hf_config.exists():
      raise interop.InteropError(f"--hf_dir={src}: no config.json.")
    fields = interop.config_from_hf(json.loads(hf_config.read_text()),
                                    str(hf_config))
    cfg = models.BertConfig(**fields)
    params, fresh = interop.params_from_hf(src, cfg, _SEED.value)
    vocab = _VOCAB_FILE.value or str(epath.Path(src) / "vocab.txt")
    tok_cfg = epath.Path(src) / "tokenizer_config.json"
    lower = _lower(json.loads(tok_cfg.read_text()).get("do_lower_case", True)
                   if tok_cfg.exists() else True)
  else:
    src = _required(_TF_CHECKPOINT, kind)
    bert_json = _required(_BERT_CONFIG, kind)
    fields = interop.config_from_google(
        json.loads(epath.Path(bert_json).read_text()), bert_json)
    cfg = models.BertConfig(**fields)
    params, fresh = interop.from_named(interop.read_tf_checkpoint(src), cfg,
                                       src, rng_seed=_SEED.value)
    vocab = _required(_VOCAB_FILE, kind)
    name = os.path.basename(src).lower() + os.path.dirname(src).lower()
    lower = _lower("uncased" in name or "cased" not in name)
  if not epath.Path(vocab).exists():
    raise interop.InteropError(f"{vocab}: no vocab file (pass --vocab_file).")
  interop.check_vocab(vocab, cfg)
  out = epath.Path(workdir)
  if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
    raise interop.InteropError(f"--workdir={workdir} already holds "
                               "checkpoints; import into a new directory.")
  out.mkdir(parents=True, exist_ok=True)
  vocab_name = "vocab.txt" if not vocab.endswith(".model") else "spm.model"
  (out / vocab_name).write_bytes(epath.Path(vocab).read_bytes())
  config = bert_config.get_config("base")
  config.model.update(fields)
  meta = {"imported_from": src, "format": kind[len("import_"):],
          "config": config.to_json(), "vocab_file": vocab_name,
          "do_lower_case": lower, "initialised": fresh}
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  ckpt.save(0, {"params": params}, meta, force=True)
  ckpt.wait()
  ckpt.close()
  overrides = " ".join(f"--config.model.{k}={v}" for k, v in fields.items())
  return {"workdir": workdir, "initialised_fresh": fresh,
          "do_lower_case": lower,
          "train_with": f"--config.init_from={workdir} {overrides}"}


def _required(flag, command: str) -> str:
  if not flag.value:
    raise app.UsageError(f"{command} needs --{flag.name}.")
  return flag.value


def main(argv):
  if len(argv) != 2 or argv[1] not in _COMMANDS:
    raise app.UsageError(f"usage: python -m bert_jax.convert "
                         f"{{{'|'.join(_COMMANDS)}}} --flags...")
  command = argv[1]
  workdir = _required(_WORKDIR, command)
  if command.startswith("export"):
    report = export(command, workdir, _STEP.value,
                    _required(_OUTPUT_DIR, command))
  else:
    report = import_checkpoint(command, workdir)
  print(json.dumps(report, indent=1))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
