"""Per-token vectors of chosen encoder layers, batched and jit-compiled
(the library behind `python -m bert_jax.extract_features`).

A layer's vectors are its output: for BERT, after its output LayerNorm
(Google's `all_encoder_layers`); for ModernBERT, the residual stream after
the layer, and after the final norm for the last layer (transformers'
`hidden_states[i + 1]`; the last is `last_hidden_state`)."""

from __future__ import annotations

import functools
import json

import numpy as np

from data_prep import fileio


class LayerError(ValueError):
  """A requested layer the model does not have."""


def extract(params, cfg, rows, segs, layers: list[int], max_seq_length: int,
            batch_size: int, cpu_dots: str = "auto"):
  """Yields, per example, an array [len(layers), tokens, hidden];
  `cpu_dots`: as `config.cpu_dots` (`bert_jax.xla_cpu`)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from bert_jax import families  # pylint: disable=g-import-not-at-top
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  from bert_jax import modernbert  # pylint: disable=g-import-not-at-top
  from bert_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  n = cfg.num_hidden_layers
  bad = [l for l in layers if not -n <= l < n]
  if bad:
    raise LayerError(f"--layers={bad}: the model has {n} layers "
                     f"(use {-n}..{n - 1}).")
  if families.family(cfg) == "modernbert":
    model, name = modernbert.ModernBert(cfg), "model"
    run = lambda p, ids, mask, seg: model.apply(  # no token types
        p, ids, mask, mutable=["intermediates"])
  else:
    model, name = models.Bert(cfg, pooler=cfg.nsp), "bert"
    run = functools.partial(model.apply, mutable=["intermediates"])
  opts = xla_cpu.compiler_options(cpu_dots, cfg.hidden_size,
                                  jax.devices()[0].platform)

  @functools.partial(jax.jit, compiler_options=opts)
  def forward(ids, mask, seg):
    last, state = run({"params": params[name]}, ids, mask, seg)
    outs = state["intermediates"]
    outs = list(outs.get("encoder", outs)["layer_outputs"])
    if name == "model":  # ModernBERT: the final norm's output
      outs[-1] = last
    return jnp.stack([outs[l] for l in layers], axis=1).astype(jnp.float32)

  for start in range(0, len(rows), batch_size):
    chunk = range(start, min(start + batch_size, len(rows)))
    ids = np.zeros((batch_size, max_seq_length), np.int32)
    seg, mask = np.zeros_like(ids), np.zeros_like(ids)
    for r, i in enumerate(chunk):
      k = len(rows[i])
      ids[r, :k], seg[r, :k], mask[r, :k] = rows[i], segs[i], 1
    out = np.asarray(forward(ids, mask, seg))
    for r, i in enumerate(chunk):
      yield out[r, :, :len(rows[i])]


def write_jsonl(f, index: int, tokens: list[str], layers: list[int],
                vectors: np.ndarray) -> None:
  values = np.round(vectors.astype(np.float64), 6).tolist()
  f.write(json.dumps({"linex_index": index, "features": [
      {"token": t, "layers": [{"index": l, "values": values[j][i]}
                              for j, l in enumerate(layers)]}
      for i, t in enumerate(tokens)]}) + "\n")


def extract_file(workdir, step, input_file, output_file, layers,
                 max_seq_length, batch_size, vocab_file=None,
                 do_lower_case=None, cpu_dots: str = "auto") -> int:
  """Reads, tokenizes, runs and writes; returns the number of examples."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  from bert_jax.conversion import interop  # pylint: disable=g-import-not-at-top
  from bert_jax.downstream import tasks  # pylint: disable=g-import-not-at-top
  from data_prep import tokenization  # pylint: disable=g-import-not-at-top
  from bert_jax import runs  # pylint: disable=g-import-not-at-top
  if not output_file.endswith((".jsonl", ".npz")):
    raise LayerError(f"--output_file={output_file}: the format follows the "
                     "extension, .jsonl (Google's) or .npz.")
  run = runs.open_run(workdir, step)
  params, cfg = run.params(), run.model_config
  if not layers:  # the last four, as Google's default, or all there are
    layers = [-i for i in range(1, min(4, cfg.num_hidden_layers) + 1)]
  if max_seq_length > cfg.max_position_embeddings:
    raise LayerError(f"--max_seq_length={max_seq_length} exceeds the "
                     f"model's {cfg.max_position_embeddings} positions.")
  found, lower = run.vocab()
  vocab_file = vocab_file or found
  if vocab_file is None:
    raise ValueError(f"No vocab recorded for {workdir}; pass --vocab_file.")
  interop.check_vocab(vocab_file, cfg)
  tok = tokenization.load_tokenizer(
      vocab_file, lower if do_lower_case is None else do_lower_case)
  text = epath.Path(input_file).read_text(encoding="utf-8")
  examples = tasks.read_examples(text.splitlines())
  rows, segs = tasks.featurize(examples, tok, max_seq_length)
  vectors = extract(params, cfg, rows, segs, layers, max_seq_length,
                    batch_size, cpu_dots)
  if output_file.endswith(".npz"):
    stacked = np.concatenate([v.transpose(1, 0, 2) for v in vectors]) if rows \
        else np.zeros((0, len(layers), cfg.hidden_size), np.float32)
    arrays = {f"layer_{l}": stacked[:, j] for j, l in enumerate(layers)}
    arrays["tokens"] = np.array([tok.id_to_token[i] for r in rows for i in r])
    arrays["example_index"] = np.repeat(np.arange(len(rows)),
                                        [len(r) for r in rows])
    with fileio.atomic_write(output_file, "wb") as f:
      np.savez(f, **arrays)
  else:
    with fileio.atomic_write(output_file) as f:
      for index, (row, v) in enumerate(zip(rows, vectors)):
        write_jsonl(f, index, [tok.id_to_token[i] for i in row], layers, v)
  return len(rows)
