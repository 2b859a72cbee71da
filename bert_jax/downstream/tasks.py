"""Fine-tuning task files: train / dev / test splits in TSV, CSV or JSONL.

A task directory holds `train.<ext>` and `dev.<ext>` and, optionally,
`test.<ext>` (labels may be absent there), where the extension picks the
reader:

* `.tsv`: tab-separated, no quoting (as GLUE's files and Google's `_read_tsv`
  with `quotechar=None`); a header row names the columns unless
  `has_header=False`, in which case columns are 0-based numbers (GLUE's CoLA).
* `.csv`: the `csv` module's default dialect (quotes allowed), same header
  rules.
* `.jsonl`: one JSON object a line; columns are keys.

Columns are given by name or, for files without a header, by 0-based index.
Classification labels are strings (JSON numbers and booleans by their JSON
spelling); their ids follow an explicit list or, by default, the sorted
distinct values of the training split. Every problem is reported with the file,
line and column that caused it.

Features: `read_examples` and `featurize` turn text (a line, or `a ||| b`)
into Google's `[CLS] a [SEP] (b [SEP])` ids and segments, with Google's
`_truncate_seq_pair`; fine-tuning and `extract_features` share them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
from typing import Any, Sequence

from etils import epath

EXTENSIONS = (".tsv", ".csv", ".jsonl")


class TaskError(ValueError):
  """A task file that cannot be used as given, and where."""


@dataclasses.dataclass
class Split:
  """One file's examples; `labels`: class ids or floats (None: unlabeled)."""
  path: str
  text_a: list[str]
  text_b: list[str] | None
  labels: list[Any] | None

  def __len__(self) -> int:
    return len(self.text_a)

  def examples(self) -> list[tuple[str, str | None]]:
    """(text_a, text_b or None) pairs, as `extract_features.featurize` takes."""
    b = self.text_b or [None] * len(self.text_a)
    return list(zip(self.text_a, b))


@dataclasses.dataclass
class Task:
  name: str
  train: Split
  dev: Split
  test: Split | None
  labels: list[str] | None  # class names by id; None for regression
  regression: bool

  @property
  def num_outputs(self) -> int:
    return 1 if self.regression else len(self.labels)


def find_file(task_dir: str, split: str, required: bool = True) -> str | None:
  """`task_dir/split.{tsv,csv,jsonl}`; exactly one may exist."""
  d = epath.Path(task_dir)
  found = [str(d / f"{split}{ext}") for ext in EXTENSIONS
           if (d / f"{split}{ext}").exists()]
  if len(found) > 1:
    raise TaskError(f"{task_dir}: several {split} files {found}; keep one.")
  if not found and required:
    raise TaskError(f"{task_dir}: no {split} file ({split}.tsv, {split}.csv "
                    f"or {split}.jsonl).")
  return found[0] if found else None


def read_rows(path: str, has_header: bool
              ) -> tuple[list[str] | None, list[tuple[int, Any]]]:
  """(header or None, [(1-based line number, row)]) with rows as lists of
  strings (TSV, CSV) or dicts (JSONL); blank lines are skipped."""
  text = epath.Path(path).read_text(encoding="utf-8-sig")
  rows: list[tuple[int, Any]] = []
  if path.endswith(".jsonl"):
    for n, line in enumerate(text.split("\n"), 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise TaskError(f"{path}:{n}: not valid JSON ({e.msg}).") from e
      if not isinstance(row, dict):
        raise TaskError(f"{path}:{n}: a JSON object per line is needed, got "
                        f"{type(row).__name__}.")
      rows.append((n, row))
    return None, rows
  if path.endswith(".tsv"):
    lines = ((n, line.rstrip("\r").split("\t"))
             for n, line in enumerate(text.split("\n"), 1))
  else:
    reader = csv.reader(io.StringIO(text, newline=""))
    lines = ((reader.line_num, row) for row in reader)
  header = None
  for n, row in lines:
    if not any(cell.strip() for cell in row):
      continue
    if has_header and header is None:
      header = [c.strip() for c in row]
      continue
    rows.append((n, row))
  if has_header and header is None:
    raise TaskError(f"{path}: empty file (not even a header row).")
  return header, rows


def _column(spec: str, header: list[str] | None, path: str, flag: str
            ) -> int | str:
  """A column name, or index for headerless files, → list index or key."""
  if header is None and path.endswith(".jsonl"):
    return spec
  if header is not None and spec in header:
    return header.index(spec)
  if spec.strip().isdigit():
    return int(spec)
  if header is None:
    raise TaskError(f"{path}: {flag}={spec!r}: this file has no header row "
                    "(has_header=false), so columns are 0-based numbers.")
  raise TaskError(f"{path}:1: no column {spec!r} ({flag}); the header has "
                  f"{header}. For a file without a header row set "
                  "has_header=false and give 0-based column numbers.")


def _cell(row, col, path: str, line: int, spec: str, flag: str,
          optional: bool = False):
  """A row's value in one column; None if `optional` and absent."""
  if isinstance(row, dict):
    if col not in row:
      if optional:
        return None
      raise TaskError(f"{path}:{line}: no key {spec!r} ({flag}); the object "
                      f"has {sorted(row)}.")
    return row[col]
  if col >= len(row):
    if optional:
      return None
    raise TaskError(f"{path}:{line}: {len(row)} columns, but {flag}={spec!r} "
                    f"is column {col} (0-based).")
  return row[col]


def _text(value, path, line, spec, flag) -> str:
  if isinstance(value, str):
    return value
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return str(value)
  raise TaskError(f"{path}:{line}: {flag}={spec!r} holds {value!r}, not "
                  "text.")


def label_string(value) -> str:
  """A label as text: strings as they are, JSON values by their JSON form."""
  return value if isinstance(value, str) else json.dumps(value)


def read_split(path: str, has_header: bool, text_a: str, text_b: str,
               label: str, label_required: bool = True) -> Split:
  """Raw texts and label strings (labels None where the column is absent
  from an unlabeled split)."""
  header, rows = read_rows(path, has_header)
  if not rows:
    raise TaskError(f"{path}: no examples.")
  col_a = _column(text_a, header, path, "text_a")
  col_b = _column(text_b, header, path, "text_b") if text_b else None
  if label_required:
    col_l = _column(label, header, path, "label")
  elif header is not None:  # unlabeled splits: only a column of that name
    col_l = header.index(label) if label in header else None
  elif path.endswith(".jsonl"):
    col_l = label if any(label in r for _, r in rows) else None
  else:
    col_l = int(label) if label.strip().isdigit() else None
  a, b, labels = [], [] if col_b is not None else None, []
  for line, row in rows:
    a.append(_text(_cell(row, col_a, path, line, text_a, "text_a"), path,
                   line, text_a, "text_a"))
    if col_b is not None:
      b.append(_text(_cell(row, col_b, path, line, text_b, "text_b"), path,
                     line, text_b, "text_b"))
    if col_l is not None:
      value = _cell(row, col_l, path, line, label, "label",
                    optional=not label_required)
      labels.append(None if value is None else (line, label_string(value)))
  if col_l is None or all(l is None for l in labels):
    labels = None
  elif any(l is None for l in labels):
    first = next(i for i, l in enumerate(labels) if l is None)
    raise TaskError(f"{path}:{rows[first][0]}: no label ({label!r}), though "
                    "other examples of this file have one.")
  return Split(path, a, b, labels)


def _to_ids(split: Split, names: Sequence[str], label: str, source: str
            ) -> None:
  index = {n: i for i, n in enumerate(names)}
  ids = []
  for line, value in split.labels:
    if value not in index:
      raise TaskError(f"{split.path}:{line}: label {value!r} (column "
                      f"{label!r}) is not one of the labels {list(names)} "
                      f"({source}); list them all with labels=a,b,...")
    ids.append(index[value])
  split.labels = ids


def _to_floats(split: Split, label: str) -> None:
  out = []
  for line, value in split.labels:
    try:
      x = float(value)
    except ValueError:
      x = math.nan
    if not math.isfinite(x):
      raise TaskError(f"{split.path}:{line}: regression target {value!r} "
                      f"(column {label!r}) is not a finite number.")
    out.append(x)
  split.labels = out


def load_task(task_dir: str, text_a: str, text_b: str = "",
              label: str = "label", has_header: bool = True,
              labels: Sequence[str] | str = "", regression: bool = False,
              name: str = "", test_has_header: bool | None = None,
              test_text_a: str = "", test_text_b: str | None = None) -> Task:
  """Reads and checks all splits; labels become ids (or floats)."""
  if not text_a:
    raise TaskError("text_a: the (first) text column is required.")
  if isinstance(labels, str):
    labels = [l.strip() for l in labels.split(",") if l.strip()]
  labels = list(labels)
  if regression and labels:
    raise TaskError("labels=... and regression=True exclude each other.")
  if len(set(labels)) != len(labels):
    raise TaskError(f"labels={labels}: listed more than once.")
  train = read_split(find_file(task_dir, "train"), has_header, text_a, text_b,
                     label)
  dev = read_split(find_file(task_dir, "dev"), has_header, text_a, text_b,
                   label)
  test_path = find_file(task_dir, "test", required=False)
  test = None
  if test_path:
    test = read_split(
        test_path, has_header if test_has_header is None else test_has_header,
        test_text_a or text_a, text_b if test_text_b is None else test_text_b,
        label, label_required=False)
  labeled = [s for s in (train, dev, test) if s is not None and s.labels]
  if regression:
    for s in labeled:
      _to_floats(s, label)
  else:
    source = "given by labels=" if labels else f"those in {train.path}"
    if not labels:
      labels = sorted({v for _, v in train.labels})
      if len(labels) < 2:
        raise TaskError(f"{train.path}: every example has label {labels}; "
                        "classification needs at least two (regression=True "
                        "for numeric targets).")
    for s in labeled:
      _to_ids(s, labels, label, source)
  return Task(name or os.path.basename(os.path.normpath(task_dir)), train,
              dev, test, None if regression else labels, regression)


# --- features (also Google's extract_features.py input) -------------------
_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


def read_examples(lines: list[str]) -> list[tuple[str, str | None]]:
  """(text_a, text_b or None) per line, split at ' ||| ' as Google does."""
  out = []
  for line in lines:
    line = line.strip()
    m = _PAIR.match(line)
    out.append((line, None) if m is None else (m.group(1), m.group(2) or None))
  return out


def truncate_pair(a: list, b: list, max_length: int) -> None:
  """Google's `_truncate_seq_pair`: pop from the end of the longer one."""
  while len(a) + len(b) > max_length:
    (a if len(a) > len(b) else b).pop()


def featurize(examples, tokenizer, max_seq_length: int):
  """[CLS] a [SEP] (b [SEP]) ids and segments. As Google's
  run_classifier.py / extract_features.py, a pair is a pair when b has
  tokens (`if tokens_b:`): a b that tokenizes to nothing gives a single."""
  texts = [t for a, b in examples for t in ((a, b) if b else (a,))]
  ids = iter(tokenizer.encode(texts))
  rows, segs = [], []
  for _, b in examples:
    ta = list(next(ids))
    tb = list(next(ids)) if b else []
    b = bool(tb)
    if b:
      truncate_pair(ta, tb, max_seq_length - 3)
    else:
      ta = ta[:max_seq_length - 2]
    row = [tokenizer.cls_id, *ta, tokenizer.sep_id]
    seg = [0] * len(row)
    if b:
      row += [*tb, tokenizer.sep_id]
      seg += [1] * (len(tb) + 1)
    rows.append(row)
    segs.append(seg)
  return rows, segs
