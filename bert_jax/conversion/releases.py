"""Whole-checkpoint conversions: a run's checkpoint out to Hugging Face or
Google TF form, and released weights in as a workdir to train from.

Used by `python -m bert_jax.convert` (one checkpoint) and
`python -m bert_jax.seed_sweep --export_hf` (every kept checkpoint of every
seed).
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import logging
from etils import epath

from bert_jax import checkpointing
from bert_jax import models
from bert_jax import runs
from bert_jax.conversion import interop
from data_prep import fileio


def export_run(workdir: str, step: int | None, output_dir: str,
               kind: str = "hf", vocab_file: str | None = None,
               do_lower_case: bool | None = None,
               heads: str = "auto") -> dict:
  """A run's checkpoint (`step` None or -1: latest) → a transformers
  directory (`kind` "hf") or a TF-1 checkpoint directory ("tf"). `heads`:
  `interop.HF_HEADS`' key, or auto (mlm for an MLM-only model)."""
  run = runs.open_run(workdir, step)
  params, cfg, step = run.params(), run.model_config, run.step
  if heads == "auto":
    heads = "pretraining" if cfg.nsp else "mlm"
  elif heads == "pretraining" and not cfg.nsp:
    raise interop.InteropError(
        f"{workdir} is an MLM-only model (model.nsp=False): it has no pooler "
        "or NSP head for BertForPreTraining; use --heads=mlm or none.")
  found, lower = run.vocab()
  vocab = vocab_file or found
  if vocab is None:
    logging.warning("No vocab found for %s (pass --vocab_file); exporting "
                    "weights and config only.", workdir)
  else:
    interop.check_vocab(vocab, cfg)
  lower = lower if do_lower_case is None else do_lower_case
  if kind == "hf":
    files = interop.write_hf(output_dir, params, cfg, vocab, lower,
                             heads=heads)
  elif kind == "tf":
    out = epath.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    interop.write_tf_checkpoint(str(out / "bert_model.ckpt"), params)
    fileio.write_atomic(
        str(out / "bert_config.json"),
        json.dumps(interop.config_to_google(cfg), indent=2) + "\n")
    files = ["bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001",
             "bert_config.json"]
    if vocab:
      fileio.write_atomic(str(out / os.path.basename(vocab)),
                          epath.Path(vocab).read_bytes())
      files.append(os.path.basename(vocab))
  else:
    raise ValueError(f"export kind {kind!r}: hf or tf.")
  return {"step": step, "output_dir": output_dir, "files": files,
          "do_lower_case": lower}


def import_hf(hf_dir: str, workdir: str, vocab_file: str | None = None,
              do_lower_case: bool | None = None, seed: int = 0) -> dict:
  """A transformers BERT directory → an Orbax checkpoint in `workdir`."""
  hf_config = epath.Path(hf_dir) / "config.json"
  if not hf_config.exists():
    raise interop.InteropError(f"--hf_dir={hf_dir}: no config.json.")
  fields = interop.config_from_hf(json.loads(hf_config.read_text()),
                                  str(hf_config))
  params, fresh = interop.params_from_hf(hf_dir, models.BertConfig(**fields),
                                         seed)
  tok_cfg = epath.Path(hf_dir) / "tokenizer_config.json"
  if do_lower_case is None:
    do_lower_case = (json.loads(tok_cfg.read_text()).get("do_lower_case", True)
                     if tok_cfg.exists() else True)
  return _save_import(workdir, hf_dir, "hf", fields, params, fresh,
                      vocab_file or str(epath.Path(hf_dir) / "vocab.txt"),
                      do_lower_case)


def import_tf(tf_checkpoint: str, bert_config: str, vocab_file: str,
              workdir: str, do_lower_case: bool | None = None,
              seed: int = 0) -> dict:
  """A Google TF-1 checkpoint + bert_config.json → an Orbax checkpoint."""
  fields = interop.config_from_google(
      json.loads(epath.Path(bert_config).read_text()), bert_config)
  params, fresh = interop.from_named(
      interop.read_tf_checkpoint(tf_checkpoint), models.BertConfig(**fields),
      tf_checkpoint, rng_seed=seed)
  if do_lower_case is None:  # Google's release names say "uncased"/"cased"
    name = tf_checkpoint.lower()
    do_lower_case = "uncased" in name or "cased" not in name
  return _save_import(workdir, tf_checkpoint, "tf", fields, params, fresh,
                      vocab_file, do_lower_case)


def _save_import(workdir, src, fmt, fields, params, fresh, vocab,
                 do_lower_case) -> dict:
  cfg = models.BertConfig(**fields)
  if not epath.Path(vocab).exists():
    raise interop.InteropError(f"{vocab}: no vocab file (pass --vocab_file).")
  interop.check_vocab(vocab, cfg)
  out = epath.Path(workdir)
  if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
    raise interop.InteropError(f"--workdir={workdir} already holds "
                               "checkpoints; import into a new directory.")
  out.mkdir(parents=True, exist_ok=True)
  vocab_name = "spm.model" if vocab.endswith(".model") else "vocab.txt"
  fileio.write_atomic(str(out / vocab_name), epath.Path(vocab).read_bytes())
  # An import's config is its model: the source's fields, the rest as the
  # model defines them (a training run records its whole recipe instead).
  meta = runs.RunMeta(kind="import",
                      config=json.dumps({"model": dataclasses.asdict(cfg)}),
                      imported_from=src, format=fmt, vocab_file=vocab_name,
                      do_lower_case=bool(do_lower_case),
                      initialised=tuple(fresh))
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  ckpt.save(0, {"params": params}, meta.to_json(), force=True)
  ckpt.wait()
  ckpt.close()
  overrides = " ".join(f"--config.model.{k}={v}" for k, v in fields.items())
  return {"workdir": workdir, "initialised_fresh": fresh,
          "do_lower_case": do_lower_case,
          "train_with": f"--config.init_from={workdir} {overrides}"}
