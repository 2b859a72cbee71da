"""XLA:CPU compiler options for the jitted steps (`config.cpu_dots`).

XLA:CPU sends dots and reductions to YNNPACK by default. oneDNN's dots made
the BERT-Base train step 1.15× faster (Mini/Small 1.07×, Tiny 0.97×) on one
2-core AMD EPYC VM and 0.97× (Mini 0.98×) on another
(`bench/step_variants.py --variants=ynn,onednn_dots`), and on that second one
XLA's oneDNN path crashes the whole process (`partition compile failed`, then
SIGILL) compiling attention-like batched products, which no exception
handler can catch. So oneDNN is used only where a **probe** has
shown it works: a child process compiles and runs, with oneDNN dots, the
computations the project jits (pretraining train and eval steps, fine-tuning's
train step and forward, feature extraction, the bare attention pattern),
compares them with YNNPACK, and the verdict is cached per machine and jaxlib
(`cache_path()`). Choices:

  auto    oneDNN dots from hidden size 256 up where the probe passed, else
          YNNPACK (the default: safe on every CPU)
  ynn     XLA's default (YNNPACK), never probes
  onednn  oneDNN dots at any size; refused, naming the probe's failure, where
          the probe failed

Only CPU compiles are affected; GPU and TPU compile as usual.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform as _platform
import subprocess
import sys

from absl import logging

from data_prep import fileio

CHOICES = ("auto", "ynn", "onednn")
ONEDNN_FROM_HIDDEN = 256  # `auto`: oneDNN dots from this hidden size up
PROBE_VERSION = 1  # bump when the probed computations change
PROBE_TIMEOUT_S = 600
IN_PROBE = "BERT_JAX_IN_ONEDNN_PROBE"  # set in the probe's own process

# oneDNN for dots, YNNPACK for reductions only (no YNN dot fusions).
ONEDNN_DOTS = {
    "xla_cpu_use_onednn": True,
    "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE",
}


class OneDnnUnavailable(ValueError):
  """`cpu_dots=onednn` on a machine where the probe failed."""


def check(choice: str) -> None:
  if choice not in CHOICES:
    raise ValueError(f"config.cpu_dots={choice!r}: expected one of "
                     f"{', '.join(CHOICES)}.")


def compiler_options(choice: str, hidden_size: int,
                     platform: str) -> dict | None:
  """`jax.jit(..., compiler_options=...)` for a step of a model with this
  hidden size on `platform` (a jax device platform): None leaves XLA's
  defaults."""
  check(choice)
  if platform != "cpu" or choice == "ynn" or (
      choice == "auto" and hidden_size < ONEDNN_FROM_HIDDEN):
    return None
  verdict = probe()
  if verdict["ok"]:
    return dict(ONEDNN_DOTS)
  if choice == "onednn":
    raise OneDnnUnavailable(
        f"config.cpu_dots=onednn: XLA's oneDNN dots fail on this CPU "
        f"({verdict['cpu']}): {verdict['reason']} (probe cached in "
        f"{cache_path()}). Use cpu_dots=auto or ynn.")
  _note_off(verdict["reason"])
  return None


@functools.cache
def _note_off(reason: str) -> None:
  logging.info("cpu_dots=auto: YNNPACK dots (oneDNN's failed the probe on "
               "this CPU: %s).", reason)


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      info = f.read()
  except OSError:
    return _platform.processor() or _platform.machine()
  fields = {}
  for line in info.splitlines():
    key, _, value = line.partition(":")
    fields.setdefault(key.strip(), value.strip())
  name = " ".join(fields.get("model name", _platform.machine()).split())
  flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:12]
  return f"{name} [flags {flags}]"


def cache_path() -> str:
  """Where this machine's verdict is kept: one file per CPU model and flags,
  jax/jaxlib version and probe version, under $BERT_JAX_CACHE_DIR (default
  $XDG_CACHE_HOME/bert_jax or ~/.cache/bert_jax)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  root = os.environ.get("BERT_JAX_CACHE_DIR") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
      "bert_jax")
  xla_flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
               if not f.startswith("--xla_force_host_platform_device_count")]
  key = json.dumps([_cpu_name(), jax.__version__, jaxlib.__version__,
                    PROBE_VERSION, xla_flags])
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return os.path.join(root, f"onednn_probe-{digest}.json")


@functools.cache
def probe() -> dict:
  """{"ok", "reason", "cpu"}: whether oneDNN dots compile and run the
  project's computations on this machine, from the cache or a child process
  (`python -m bert_jax.xla_cpu_probe`, about half a minute, once per
  machine)."""
  if os.environ.get(IN_PROBE):
    return {"ok": True, "reason": "inside the probe", "cpu": _cpu_name()}
  path = cache_path()
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    pass
  logging.info("Probing XLA's oneDNN dots on this CPU (once; cached in %s).",
               path)
  env = dict(os.environ, **{IN_PROBE: "1"})
  try:
    proc = subprocess.run([sys.executable, "-m", "bert_jax.xla_cpu_probe",
                           "onednn"],
                          capture_output=True, text=True, env=env,
                          timeout=PROBE_TIMEOUT_S, check=False)
    ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr).strip()
    reason = "passed" if ok else (
        f"the probe exited with {_exit(proc.returncode)}; last output: "
        f"{' | '.join(tail.splitlines()[-3:])[-400:]}")
  except subprocess.TimeoutExpired:
    ok, reason = False, f"the probe ran past {PROBE_TIMEOUT_S} s"
  verdict = {"ok": ok, "reason": reason, "cpu": _cpu_name()}
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with fileio.atomic_write(path) as f:
      json.dump(verdict, f)
  except OSError as e:
    logging.warning("Could not cache the oneDNN probe in %s: %s", path, e)
  return verdict


def _exit(code: int) -> str:
  if code < 0:
    import signal  # pylint: disable=g-import-not-at-top
    try:
      return f"signal {signal.Signals(-code).name}"
    except ValueError:
      return f"signal {-code}"
  return f"code {code}" + (" (SIGILL)" if code == 132 else "")
