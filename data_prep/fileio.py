"""Local and remote (gs://, s3://, hdfs://) file access for data preparation.

Local paths use the standard library; paths with a scheme go through
`tf.io.gfile`, imported only then, so local data preparation never pays for
TensorFlow's start-up.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import os
import shutil
from typing import IO, Iterator


def is_remote(path: str) -> bool:
  return "://" in path


def resolve(path: str | None) -> str | None:
  """A local path (or glob) made absolute, `~` expanded, where it enters the
  program: later stages, Orbax and recorded metadata then work from any
  directory. URLs (`gs://…`) and empty values are returned as they are."""
  if not path or is_remote(path):
    return path
  return os.path.abspath(os.path.expanduser(path))


def resolve_list(paths: str | None) -> str | None:
  """`resolve` for each item of a comma-separated list of paths or globs."""
  if not paths:
    return paths
  return ",".join(resolve(p.strip()) for p in paths.split(",") if p.strip())


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def glob(pattern: str) -> list[str]:
  if is_remote(pattern):
    return sorted(_gfile().glob(pattern))
  return sorted(_glob.glob(resolve(pattern)))


def exists(path: str) -> bool:
  return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def size(path: str) -> int:
  return _gfile().stat(path).length if is_remote(path) else os.path.getsize(path)


def open_file(path: str, mode: str = "rb") -> IO:
  return _gfile().GFile(path, mode) if is_remote(path) else open(path, mode)


def temporary_name(path: str, tag: str = "") -> str:
  """Where `path` is written before it is renamed into place: a hidden
  sibling, `.<name>.tmp-<tag>` (default tag: the process id), which globs
  such as `train-*` or `*` never match."""
  head, name = path.rsplit("/", 1) if "/" in path else ("", path)
  hidden = f".{name}.tmp-{tag or os.getpid()}"
  return f"{head}/{hidden}" if head else hidden


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", tag: str = "") -> Iterator[IO]:
  """A file open for writing under `temporary_name(path, tag)`, renamed to
  `path` when the block ends and removed if it raises: a failed or killed
  writer never leaves a file that looks complete. Text is UTF-8."""
  tmp = temporary_name(path, tag)
  if is_remote(path):
    f = _gfile().GFile(tmp, mode)
    f.write(b"" if "b" in mode else "")  # gfile creates the file on write
  else:
    f = open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
  try:
    yield f
  except BaseException:
    f.close()
    if exists(tmp):
      remove(tmp)
    raise
  f.close()
  rename(tmp, path)


def write_atomic(path: str, data: str | bytes) -> None:
  """`data` into `path`, through `atomic_write`."""
  with atomic_write(path, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)


def read_bytes(path: str) -> bytes:
  with open_file(path, "rb") as f:
    return f.read()


def makedirs(path: str) -> None:
  if is_remote(path):
    _gfile().makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def rename(src: str, dst: str) -> None:
  """Atomic on local file systems; copy-then-delete on object stores."""
  if is_remote(src):
    _gfile().rename(src, dst, overwrite=True)
  else:
    os.replace(src, dst)


def remove(path: str) -> None:
  if is_remote(path):
    _gfile().remove(path)
  else:
    os.remove(path)


def rmtree(path: str) -> None:
  if is_remote(path):
    if _gfile().exists(path):
      _gfile().rmtree(path)
  else:
    shutil.rmtree(path, ignore_errors=True)


def readable(path: str) -> bool:
  if is_remote(path):
    return _gfile().exists(path) and not _gfile().isdir(path)
  return os.path.isfile(path) and os.access(path, os.R_OK)


def join(*parts: str) -> str:
  if parts and is_remote(parts[0]):
    return "/".join(p.strip("/") if i else p.rstrip("/")
                    for i, p in enumerate(parts))
  return os.path.join(*parts)
