"""How the project's command lines start and fail: `run(main, errors=...)`.

A usage error, a bad flag or config override, or one of the `errors` a
command names (bad data, a missing file, ...) ends the process with one line
on stderr — `<command>: error: <cause>` — and exit code 2 (usage) or 1
(the rest), instead of a traceback or pages of flag help. `--verbosity=1`
(or higher) shows the traceback as well. Both packages' entry points use it
(here, since data_prep must not import bert_jax).
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Callable, Sequence

from absl import app
from absl import flags

USAGE_EXIT, ERROR_EXIT = 2, 1


def verbose(argv: Sequence[str]) -> bool:
  """Whether `--verbosity` (or `-v`) ≥ 1 is among the arguments."""
  for a in argv:
    m = re.fullmatch(r"(?:--verbosity|-v)=(-?\d+)", a)
    if m and int(m.group(1)) >= 1:
      return True
  return False


def fail(message: str, code: int = ERROR_EXIT, argv: Sequence[str] = ()):
  """Prints `<command>: error: message` (and, verbose, the traceback being
  handled) and exits with `code`."""
  if verbose(argv or sys.argv) and sys.exc_info()[0] is not None:
    traceback.print_exc()
  message = " ".join(str(message).split()) or "failed"
  hint = "" if verbose(argv or sys.argv) else " (--verbosity=1: traceback)"
  print(f"{_command()}: error: {message}"
        + (hint if code == ERROR_EXIT else ""), file=sys.stderr)
  sys.exit(code)


def _command() -> str:
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if spec is not None and spec.name:
    return "python -m " + spec.name.removesuffix(".__main__")
  return os.path.basename(sys.argv[0] or "bert_jax")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, every failure one line (an ml_collections
  override of a field that does not exist names the flag and the field it
  probably meant)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e} (--helpfull lists the flags)", USAGE_EXIT, argv)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    fail(_override_message(e, argv), USAGE_EXIT, argv)
  raise AssertionError("unreachable")


def _override_message(e: Exception, argv: Sequence[str]) -> str:
  text = str(e).encode().decode("unicode_escape", "ignore")
  text = text.replace("\\'", "'").strip("'\" \n")
  words = re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)
  for a in argv:
    name = a.split("=", 1)[0]
    if name.startswith("--") and "." in name and words and (
        name.rsplit(".", 1)[-1] == words[0]):
      hint = re.search(r"Did you mean \"?([A-Za-z_0-9]+)\"?", text)
      return (f"{name}: no such field" +
              (f"; did you mean {name.rsplit('.', 1)[0]}.{hint.group(1)}?"
               if hint else " in the config (see its recipe in configs/)."))
  return " ".join(text.split())


def run(main: Callable[[list[str]], object],
        errors: tuple[type[BaseException], ...] = (),
        flags_parser: Callable[[list[str]], list[str]] = parse_flags) -> None:
  """`app.run(main)` with the failures above: app.UsageError → exit 2,
  `errors` → exit 1, each one line."""
  def wrapped(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      fail(str(e), USAGE_EXIT)
    except errors as e:  # pylint: disable=catching-non-exception
      fail(str(e), ERROR_EXIT)

  app.run(wrapped, flags_parser=flags_parser)
