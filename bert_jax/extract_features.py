r"""Per-token vectors from a checkpoint, like Google's `extract_features.py`.

  python -m bert_jax.extract_features --workdir=RUN [--step=N] \
      --input_file=in.txt --output_file=out.jsonl --layers=-1,-2,-3,-4 \
      [--max_seq_length=128]

One example per input line; `sentence A ||| sentence B` makes a pair. Output
`.jsonl`: Google's format, one line per example:
`{"linex_index": i, "features": [{"token": t, "layers": [{"index": l,
"values": [...]}]}]}` with values rounded to 6 decimals. Output `.npz`:
`tokens`, `example_index` (per token) and `layer_<l>` [tokens, hidden] arrays.
"""

from __future__ import annotations

import json

from absl import app
from absl import flags
import numpy as np

_WORKDIR = flags.DEFINE_string("workdir", None, "Run or imported checkpoint.")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step (-1: latest).")
_INPUT = flags.DEFINE_string("input_file", None, "Text, one example a line.")
_OUTPUT = flags.DEFINE_string("output_file", None, ".jsonl or .npz.")
_LAYERS = flags.DEFINE_string("layers", "-1,-2,-3,-4", "Layer indexes (-1: "
                              "last encoder layer).")
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", 128, "Tokens per example, "
                                "[CLS] and [SEP] included; longer truncated.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Examples per forward pass.")
_VOCAB = flags.DEFINE_string("vocab_file", None, "Default: the checkpoint's.")
_LOWER = flags.DEFINE_enum("do_lower_case", "auto", ["auto", "true", "false"],
                           "Default: the checkpoint's.")

def extract(params, cfg, rows, segs, layers: list[int], max_seq_length: int,
            batch_size: int):
  """Yields, per example, an array [len(layers), tokens, hidden]."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  n = cfg.num_hidden_layers
  bad = [l for l in layers if not -n <= l < n]
  if bad:
    raise app.UsageError(f"--layers={bad}: the model has {n} layers "
                         f"(use {-n}..{n - 1}).")
  model = models.Bert(cfg)

  @jax.jit
  def forward(ids, mask, seg):
    _, state = model.apply({"params": params["bert"]}, ids, mask, seg,
                           mutable=["intermediates"])
    outs = state["intermediates"]["encoder"]["layer_outputs"]
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
                 do_lower_case=None) -> int:
  """Reads, tokenizes, runs and writes; returns the number of examples."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  from bert_jax import interop  # pylint: disable=g-import-not-at-top
  from bert_jax import tasks  # pylint: disable=g-import-not-at-top
  from data_prep import tokenization  # pylint: disable=g-import-not-at-top
  params, cfg, meta, _ = interop.load_workdir(workdir, step)
  if max_seq_length > cfg.max_position_embeddings:
    raise app.UsageError(f"--max_seq_length={max_seq_length} exceeds the "
                         f"model's {cfg.max_position_embeddings} positions.")
  found, lower = interop.vocab_of(workdir, meta)
  vocab_file = vocab_file or found
  if vocab_file is None:
    raise app.UsageError(f"No vocab recorded for {workdir}; pass "
                         "--vocab_file.")
  interop.check_vocab(vocab_file, cfg)
  tok = tokenization.load_tokenizer(
      vocab_file, lower if do_lower_case is None else do_lower_case)
  text = epath.Path(input_file).read_text(encoding="utf-8")
  examples = tasks.read_examples(text.splitlines())
  rows, segs = tasks.featurize(examples, tok, max_seq_length)
  vectors = extract(params, cfg, rows, segs, layers, max_seq_length,
                    batch_size)
  out = epath.Path(output_file)
  tmp = out.parent / f".{out.name}.tmp"
  if output_file.endswith(".npz"):
    stacked = np.concatenate([v.transpose(1, 0, 2) for v in vectors]) if rows \
        else np.zeros((0, len(layers), cfg.hidden_size), np.float32)
    arrays = {f"layer_{l}": stacked[:, j] for j, l in enumerate(layers)}
    arrays["tokens"] = np.array([tok.id_to_token[i] for r in rows for i in r])
    arrays["example_index"] = np.repeat(np.arange(len(rows)),
                                        [len(r) for r in rows])
    with tmp.open("wb") as f:
      np.savez(f, **arrays)
  else:
    with tmp.open("w") as f:
      for index, (row, v) in enumerate(zip(rows, vectors)):
        write_jsonl(f, index, [tok.id_to_token[i] for i in row], layers, v)
  tmp.rename(out)
  return len(rows)


def main(argv):
  del argv
  for flag in (_WORKDIR, _INPUT, _OUTPUT):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required.")
  try:
    layers = [int(x) for x in _LAYERS.value.split(",") if x.strip()]
  except ValueError as e:
    raise app.UsageError(f"--layers={_LAYERS.value!r}: comma-separated "
                         "integers.") from e
  lower = None if _LOWER.value == "auto" else _LOWER.value == "true"
  n = extract_file(_WORKDIR.value, _STEP.value, _INPUT.value, _OUTPUT.value,
                   layers, _MAX_SEQ.value, _BATCH.value, _VOCAB.value, lower)
  print(json.dumps({"examples": n, "output_file": _OUTPUT.value}))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
