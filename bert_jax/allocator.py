"""The host allocator, chosen by the entry points when a process starts.

XLA:CPU allocates each step's temporary buffers (hundreds of MB) afresh.
glibc's default serves large blocks with `mmap` (or from per-thread heaps
that it unmaps once empty) and gives them back on free, so every step faults
in, and the kernel zeroes, the same memory again: a quarter of a BERT-Tiny
step's CPU time went to the kernel (bench/RESULTS.md, "Host allocator").

`configure()` (`BERT_JAX_ALLOCATOR=auto`, the default), in order:
  1. an allocator already in LD_PRELOAD (tcmalloc, jemalloc, mimalloc) stays;
  2. where tcmalloc is installed (Debian/Ubuntu `libtcmalloc-minimal4`), the
     process restarts itself once with it preloaded (same argv and pid);
  3. otherwise glibc is told, in process, to keep freed memory for reuse
     (`mallopt`: one arena, no mmap, no trimming).
The choice is logged. The price of 2 and 3: the process keeps its peak memory
instead of returning it. `BERT_JAX_ALLOCATOR=glibc` skips step 2, `system`
leaves everything as the system set it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from absl import logging

CHOICES = ("auto", "glibc", "system")
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_RESTARTED = "BERT_JAX_ALLOCATOR_RESTARTED"  # set in the restarted process
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                  "/usr/lib64", "/usr/lib", "/usr/local/lib")
_state: dict = {}


def _preloaded() -> str:
  """The allocator library in LD_PRELOAD, if one is."""
  for lib in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
    name = os.path.basename(lib)
    if any(k in name for k in ("tcmalloc", "jemalloc", "mimalloc")):
      return name
  return ""


def find_tcmalloc() -> str:
  for d in LIBRARY_DIRS:
    for name in ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"):
      if os.path.exists(os.path.join(d, name)):
        return os.path.join(d, name)
  return ""


def _restart_with(lib: str) -> None:
  """Replaces this process by the same command with `lib` preloaded."""
  env = dict(os.environ, **{_RESTARTED: "1"})
  env["LD_PRELOAD"] = " ".join(filter(None, (lib, env.get("LD_PRELOAD"))))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)


def keep_freed_memory() -> str:
  """glibc: serve every block from one arena's heap and never return freed
  memory (`mallopt`); returns the setting in effect."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    libc.gnu_get_libc_version()
  except (OSError, AttributeError, TypeError):
    return "the system's (not glibc: left as it is)"
  # -1 becomes SIZE_MAX in glibc: never trim.
  if not (libc.mallopt(_M_MMAP_MAX, 0) and
          libc.mallopt(_M_TRIM_THRESHOLD, -1) and
          libc.mallopt(_M_ARENA_MAX, 1)):
    return "the system's (glibc refused mallopt)"
  return ("glibc, freed memory kept for reuse (mallopt: one arena, no mmap, "
          "no trimming)")


def choose() -> str:
  """Applies the setting once per process (may restart it, see above)."""
  if "setting" in _state:
    return _state["setting"]
  choice = os.environ.get("BERT_JAX_ALLOCATOR", "auto")
  if choice not in CHOICES:
    raise ValueError(f"BERT_JAX_ALLOCATOR={choice!r}: one of {CHOICES} "
                     "(auto: tcmalloc where installed, else glibc kept "
                     "freed memory; system: as the system set it).")
  if choice == "system":
    setting = "the system's (BERT_JAX_ALLOCATOR=system)"
  elif _preloaded():
    setting = f"{_preloaded()} (LD_PRELOAD" + (
        ", set by bert_jax at start-up)" if os.environ.get(_RESTARTED) else ")")
  else:
    lib = find_tcmalloc() if choice == "auto" else ""
    # A restart needs the command to be re-runnable: a module or a script.
    if lib and not os.environ.get(_RESTARTED) and os.path.isfile(sys.argv[0]):
      _restart_with(lib)
    setting = keep_freed_memory()
  _state["setting"] = setting
  return setting


def configure() -> str:
  """Entry points call this first: applies and logs the setting."""
  setting = choose()
  logging.info("Host allocator: %s; BERT_JAX_ALLOCATOR=system opts out.",
               setting)
  return setting


if __name__ == "__main__":  # `python -m bert_jax.allocator`: what a job gets
  print(choose())
