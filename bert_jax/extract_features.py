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

from bert_jax import xla_cpu
from bert_jax.downstream import features
from data_prep import cli
from data_prep import fileio

_WORKDIR = flags.DEFINE_string("workdir", None, "Run or imported checkpoint.")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step (-1: latest).")
_INPUT = flags.DEFINE_string("input_file", None, "Text, one example a line.")
_OUTPUT = flags.DEFINE_string("output_file", None, ".jsonl or .npz.")
_LAYERS = flags.DEFINE_string("layers", "", "Layer indexes (-1: last encoder "
                              "layer; default: the last four, as Google's "
                              "-1,-2,-3,-4, or all of a shallower model).")
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", 128, "Tokens per example, "
                                "[CLS] and [SEP] included; longer truncated.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Examples per forward pass.")
_VOCAB = flags.DEFINE_string("vocab_file", None, "Default: the checkpoint's.")
_LOWER = flags.DEFINE_enum("do_lower_case", "auto", ["auto", "true", "false"],
                           "Default: the checkpoint's.")
_CPU_DOTS = flags.DEFINE_enum("cpu_dots", "auto", list(xla_cpu.CHOICES),
                              "XLA:CPU matmul library (README, 'CPU runs').")


def main(argv):
  del argv
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  allocator.configure()
  for flag in (_WORKDIR, _INPUT, _OUTPUT):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required.")
  try:
    layers = [int(x) for x in _LAYERS.value.split(",") if x.strip()]
  except ValueError as e:
    raise app.UsageError(f"--layers={_LAYERS.value!r}: comma-separated "
                         "integers.") from e
  lower = None if _LOWER.value == "auto" else _LOWER.value == "true"
  try:
    n = features.extract_file(
        fileio.resolve(_WORKDIR.value), _STEP.value,
        fileio.resolve(_INPUT.value), fileio.resolve(_OUTPUT.value), layers,
        _MAX_SEQ.value, _BATCH.value, fileio.resolve(_VOCAB.value), lower,
        _CPU_DOTS.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(json.dumps({"examples": n, "output_file": _OUTPUT.value}))


def run():
  cli.run(main, errors=(ValueError, OSError))


if __name__ == "__main__":
  run()
