"""Waiting for the machine to be quiet before a timed section.

The dev VM has 2 cores and other jobs (tests, other benchmarks) come and go;
a timing taken while another process uses a core is worth little. Before
each timed round the benchmarks call `wait()`: it samples /proc/stat and this
process's own CPU time, and returns once the *other* processes have used less
than `max_other` cores over a short window (or after `timeout` s, giving up).
`Meter` measures other processes' CPU use during a timed section, so rounds
that were disturbed anyway can be discounted.
"""

from __future__ import annotations

import os
import time


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
