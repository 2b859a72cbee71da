"""The committed (git HEAD) version of a module, for in-process A/B timing
against the working tree: `module("bert_jax/models.py")`."""

from __future__ import annotations

import os
import subprocess
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module(path: str, rev: str = "HEAD") -> types.ModuleType:
  name = f"_{rev.lower()}_" + path.replace("/", "_").removesuffix(".py")
  if name in sys.modules:
    return sys.modules[name]
  src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                       capture_output=True, text=True).stdout
  mod = types.ModuleType(name)
  mod.__file__ = f"{rev}:{path}"
  sys.modules[name] = mod
  exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # pylint: disable=exec-used
  return mod
