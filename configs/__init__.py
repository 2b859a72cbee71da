"""The shipped recipes (ml_collections config files), installed with the
package: `--config=bert:base`, `--config=configs/bert.py:base` or any path of
your own."""

import os

DIR = os.path.dirname(os.path.abspath(__file__))


def names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(DIR)
                if f.endswith(".py") and not f.startswith("_"))


def resolve(value: str) -> str:
  """A `--config` value with its file made to exist: a path that exists is
  kept; `bert`, `bert.py` or `configs/bert.py` (argument after `:` kept)
  name the installed recipe when there is no such local file."""
  path, colon, arg = value.partition(":")
  if not path or os.path.exists(path):
    return value
  name = os.path.basename(path)
  name = name if name.endswith(".py") else name + ".py"
  shipped = os.path.join(DIR, name)
  if os.path.dirname(path) in ("", "configs") and os.path.exists(shipped):
    return shipped + colon + arg
  raise FileNotFoundError(
      f"--config={value}: no such file (from {os.getcwd()}); give a config "
      f"file's path, or a shipped recipe: {', '.join(names())}.")
