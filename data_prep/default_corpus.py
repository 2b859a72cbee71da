"""The embedded default corpus: English prose harvested from installed docstrings.

bert_jax ships no text written elsewhere. The default job instead harvests the
documentation every installation already has: the docstrings of the Python
standard library and of installed scientific packages (numpy, scipy,
tensorflow, jax, …), read with `ast` from their source files (nothing is
imported or executed). Each docstring is a document; code samples, parameter
tables, reST directives and other non-prose paragraphs are dropped, markup is
removed, and paragraphs are split into sentences. The result is real English
technical prose in Google's format (one sentence per line, blank line between
documents). It depends on the installed versions, so the job records its
sha256 in the data metadata.

    python -m data_prep.default_corpus --output=corpus.txt [--max_mb=20]
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import sysconfig
from typing import Iterator

from absl import flags

from data_prep import cli
from data_prep import fileio
from data_prep import sentences as sentences_lib

# Packages harvested after the standard library, when installed.
PACKAGES = ("numpy", "scipy", "tensorflow", "keras", "jax", "flax", "optax",
            "orbax", "torch", "transformers", "absl", "ml_collections",
            "tensorflow_datasets", "etils", "sentencepiece", "tokenizers")

_SKIP_DIRS = {"test", "tests", "testing", "idlelib", "tkinter", "turtledemo",
              "lib2to3", "site-packages", "__pycache__", "_vendor", "vendor",
              "ensurepip", "pydoc_data", "encodings"}
_ROLE = re.compile(r":[\w:.-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]*)``|`([^`]*)`")
_EMPHASIS = re.compile(r"\*{1,2}([^*]+)\*{1,2}")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _source_files(root: str) -> Iterator[str]:
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames
                         if d not in _SKIP_DIRS and not d.startswith("."))
    for name in sorted(filenames):
      if name.endswith(".py") and not name.startswith("test_"):
        yield os.path.join(dirpath, name)


def _roots() -> list[str]:
  roots = [sysconfig.get_paths()["stdlib"]]
  for pkg in PACKAGES:
    spec = importlib.util.find_spec(pkg)
    if spec and spec.submodule_search_locations:
      roots.extend(sorted(spec.submodule_search_locations))
  return roots


def _is_prose(paragraph: list[str]) -> bool:
  first = paragraph[0]
  if first.startswith((">>>", "...", ".. ", "$ ", "%")) or first.endswith("::"):
    return False
  if len(paragraph) > 1 and set(paragraph[1].strip()) <= set("-=~^*"):
    return False  # a section header
  if any(l.startswith((" ", "\t")) for l in paragraph):
    return False  # indented block: code or a definition list
  if re.match(r"^[\w*, ]+\s*:\s*\S", first) and len(first.split()) < 8:
    return False  # "name : type" parameter lines
  return True


def _clean(text: str) -> str:
  text = _ROLE.sub(r"\1", text)
  text = _LITERAL.sub(lambda m: m.group(1) or m.group(2), text)
  return _EMPHASIS.sub(r"\1", text)


def _good_sentence(sentence: str) -> bool:
  words = _WORD.findall(sentence)
  if len(words) < 4 or not sentence[0].isupper():
    return False
  letters = sum(len(w) for w in words)
  return letters >= 0.6 * len(sentence) and sentence[-1] in ".!?"


def docstring_sentences(doc: str) -> list[str]:
  """Prose sentences of one docstring."""
  out: list[str] = []
  for block in re.split(r"\n\s*\n", doc):
    lines = block.split("\n")
    if not lines or not lines[0].strip() or not _is_prose(lines):
      continue
    text = _clean(" ".join(l.strip() for l in lines))
    out.extend(s for s in sentences_lib.split_sentences(text)
               if _good_sentence(s))
  return out


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _documented_nodes(tree: ast.AST) -> Iterator[ast.AST]:
  """Modules, classes and functions, in source order, visiting statements
  only (expressions hold no docstrings; `ast.walk` would visit them all)."""
  stack = [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, _DOCUMENTED):
      yield node
    children = []
    for field in ("body", "orelse", "finalbody", "handlers"):
      children.extend(c for c in getattr(node, field, ())
                      if isinstance(c, (ast.stmt, ast.excepthandler)))
    stack.extend(reversed(children))


def iter_documents(max_bytes: int | None = None) -> Iterator[list[str]]:
  """Documents (lists of sentences) harvested from installed sources."""
  seen: set[bytes] = set()
  total = 0
  for root in _roots():
    for path in _source_files(root):
      try:
        with open(path, "rb") as f:
          tree = ast.parse(f.read())
      except (SyntaxError, ValueError, OSError, RecursionError):
        continue
      for node in _documented_nodes(tree):
        doc = ast.get_docstring(node, clean=True)
        if not doc:
          continue
        sents = docstring_sentences(doc)
        if len(sents) < 2:
          continue
        key = hashlib.blake2b("\n".join(sents).encode(), digest_size=8).digest()
        if key in seen:
          continue
        seen.add(key)
        yield sents
        total += sum(len(s) + 1 for s in sents) + 1
        if max_bytes is not None and total >= max_bytes:
          return


def write_corpus(path: str, max_mb: float = 20.0) -> dict:
  """Writes the harvested corpus atomically; returns its statistics."""
  n_docs = n_sents = 0
  h = hashlib.sha256()
  with fileio.atomic_write(path) as f:
    for sents in iter_documents(int(max_mb * 2**20)):
      text = "\n".join(sents) + "\n\n"
      f.write(text)
      h.update(text.encode())
      n_docs += 1
      n_sents += len(sents)
    if not n_docs:
      raise RuntimeError("No docstrings found to build the default corpus.")
  return {"path": path, "documents": n_docs, "sentences": n_sents,
          "bytes": os.path.getsize(path), "sha256": h.hexdigest()}


def main(argv):
  del argv
  stats = write_corpus(fileio.resolve(flags.FLAGS.output), flags.FLAGS.max_mb)
  print(stats)


def _define_flags():
  """Defined on demand, so importing this module defines no flags."""
  flags.DEFINE_string("output", "default_corpus.txt",
                                "Where to write the corpus.")
  flags.DEFINE_float("max_mb", 20.0, "Stop after this many MB.")


def run():
  _define_flags()
  cli.run(main, errors=(ValueError, OSError))


if __name__ == "__main__":
  run()
