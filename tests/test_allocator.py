"""The host allocator setting: freed memory is reused, not faulted in again."""

import os
import subprocess
import sys

import pytest

_CHILD = r"""
import ctypes, ctypes.util, resource
from bert_jax import allocator
print(allocator.choose())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults, size = [], 64 << 20  # above glibc's largest mmap threshold (32 MB)
for _ in range(6):  # what XLA:CPU does with each step's temporaries
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  p = libc.malloc(size)
  ctypes.memset(p, 1, size)
  libc.free(p)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[2:]))
"""


_OURS = ("LD_PRELOAD", "BERT_JAX_ALLOCATOR", "BERT_JAX_ALLOCATOR_RESTARTED")


def _run(**env):
  env = {**{k: v for k, v in os.environ.items() if k not in _OURS}, **env}
  out = subprocess.run([sys.executable, "-c", _CHILD], env=env, text=True,
                       capture_output=True, check=True).stdout.splitlines()
  return out[0], int(out[1])


def test_freed_memory_is_reused_unless_opted_out():
  setting, faults = _run()
  assert "kept for reuse" in setting
  assert faults < 100  # 64 MB = 16,384 pages: none faulted in again
  setting, faults = _run(BERT_JAX_ALLOCATOR="system")
  assert setting.startswith("the system's")
  assert faults > 10_000  # glibc's default maps and zeroes every block again


def test_unknown_setting_is_refused():
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  env = os.environ.copy()
  try:
    os.environ["BERT_JAX_ALLOCATOR"] = "fast"
    allocator._state.clear()  # pylint: disable=protected-access
    with pytest.raises(ValueError, match="BERT_JAX_ALLOCATOR='fast'"):
      allocator.choose()
  finally:
    os.environ.clear()
    os.environ.update(env)
    allocator._state.clear()  # pylint: disable=protected-access


def test_entry_point_restarts_with_tcmalloc_where_installed():
  """A module run (as every entry point is) restarts itself once with
  tcmalloc preloaded where it is installed, else keeps glibc's memory;
  BERT_JAX_ALLOCATOR=glibc never restarts."""
  from bert_jax import allocator  # pylint: disable=g-import-not-at-top
  env = {k: v for k, v in os.environ.items() if k not in _OURS}
  run = lambda **e: subprocess.run(
      [sys.executable, "-m", "bert_jax.allocator"], env={**env, **e},
      text=True, capture_output=True, check=True).stdout.strip()
  if allocator.find_tcmalloc():
    assert run() == (f"{os.path.basename(allocator.find_tcmalloc())} "
                     "(LD_PRELOAD, set by bert_jax at start-up)")
  else:
    assert "kept for reuse" in run()
  assert "kept for reuse" in run(BERT_JAX_ALLOCATOR="glibc")
