"""Whole-checkpoint conversions: a run's checkpoint out to Hugging Face or
Google TF form, and released weights in as a workdir to train from.

Used by `python -m bert_jax.convert` (one checkpoint) and
`python -m bert_jax.seed_sweep --export_hf` (every kept checkpoint of every
seed).
"""

from __future__ import annotations

import json
import os

from absl import logging
from etils import epath

from bert_jax import checkpointing
from bert_jax import families
from bert_jax import models
from bert_jax import runs
from bert_jax.conversion import interop
from bert_jax.conversion import modernbert_hf
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
  if families.family(cfg) == "modernbert":
    return _export_modernbert(run, params, output_dir, kind, vocab_file,
                              heads)
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


def _export_modernbert(run, params, output_dir, kind, vocab_file, heads
                       ) -> dict:
  """ModernBERT: transformers only (Google's format is BERT's), as
  ModernBertForMaskedLM (heads auto/mlm) or ModernBertModel (none), with the
  run's tokenizer.json where it has one."""
  if kind != "hf":
    raise interop.InteropError(f"{run.workdir} holds a ModernBERT: Google's "
                               "TF checkpoint format is BERT's; use export_hf.")
  heads = "mlm" if heads == "auto" else heads
  if heads not in modernbert_hf.HEADS:
    raise interop.InteropError(
        f"--heads={heads}: a ModernBERT has no NSP head; mlm "
        "(ModernBertForMaskedLM) or none (ModernBertModel).")
  tokenizer = vocab_file or run.vocab()[0]
  ids = None
  if tokenizer and tokenizer.endswith(".txt"):  # a WordPiece vocab's specials
    tokens = epath.Path(tokenizer).read_text(encoding="utf-8").splitlines()
    where = {t.strip(): i for i, t in enumerate(tokens)}
    ids = {f: where[t] for f, t in (
        ("pad_token_id", "[PAD]"), ("cls_token_id", "[CLS]"),
        ("bos_token_id", "[CLS]"), ("sep_token_id", "[SEP]"),
        ("eos_token_id", "[SEP]")) if t in where}
  files = modernbert_hf.write_hf(output_dir, params, run.model_config, heads,
                                 ids)
  if tokenizer and tokenizer.endswith(".json"):
    interop.check_vocab(tokenizer, run.model_config)
    fileio.write_atomic(str(epath.Path(output_dir) / "tokenizer.json"),
                        epath.Path(tokenizer).read_bytes())
    files.append("tokenizer.json")
  else:
    logging.warning("No tokenizer.json for %s (pass --vocab_file); exported "
                    "weights and config only.", run.workdir)
  return {"step": run.step, "output_dir": output_dir, "files": files}


def import_hf(hf_dir: str, workdir: str, vocab_file: str | None = None,
              do_lower_case: bool | None = None, seed: int = 0) -> dict:
  """A transformers BERT or ModernBERT directory → an Orbax checkpoint in
  `workdir`."""
  hf_config = epath.Path(hf_dir) / "config.json"
  if not hf_config.exists():
    raise interop.InteropError(f"--hf_dir={hf_dir}: no config.json.")
  source = json.loads(hf_config.read_text())
  if source.get("model_type") == "modernbert":
    cfg, params, fresh = modernbert_hf.read_hf(hf_dir, seed)
    return _save_import(workdir, hf_dir, "hf", families.to_dict(cfg), params,
                        fresh, vocab_file or str(epath.Path(hf_dir) /
                                                 "tokenizer.json"), False)
  fields = interop.config_from_hf(source, str(hf_config))
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
  cfg = families.config_from_dict(fields)
  if not epath.Path(vocab).exists():
    raise interop.InteropError(f"{vocab}: no vocab file (pass --vocab_file).")
  interop.check_vocab(vocab, cfg)
  out = epath.Path(workdir)
  if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
    raise interop.InteropError(f"--workdir={workdir} already holds "
                               "checkpoints; import into a new directory.")
  out.mkdir(parents=True, exist_ok=True)
  vocab_name = ("spm.model" if vocab.endswith(".model") else
                "tokenizer.json" if vocab.endswith(".json") else "vocab.txt")
  fileio.write_atomic(str(out / vocab_name), epath.Path(vocab).read_bytes())
  # An import's config is its model: the source's fields, the rest as the
  # model defines them (a training run records its whole recipe instead).
  meta = runs.RunMeta(kind="import",
                      config=json.dumps({"model": families.to_dict(cfg)}),
                      imported_from=src, format=fmt, vocab_file=vocab_name,
                      do_lower_case=bool(do_lower_case),
                      initialised=tuple(fresh))
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  ckpt.save(0, {"params": params}, meta.to_json(), force=True)
  ckpt.wait()
  ckpt.close()
  overrides = " ".join(f"--config.model.{k}={v}" for k, v in fields.items()
                       if k != "family")
  return {"workdir": workdir, "initialised_fresh": fresh,
          "do_lower_case": do_lower_case,
          "train_with": f"--config.init_from={workdir} {overrides}"}
