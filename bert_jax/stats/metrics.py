"""Evaluation metrics in plain numpy, as `metric(labels, preds) -> float`.

Used as multi-bootstrap `score_fn`s (by name in `METRICS`). GLUE uses accuracy
(most tasks), F1 (MRPC, QQP, with accuracy), Matthews correlation (CoLA) and
Pearson/Spearman (STS-B). Degenerate inputs follow scikit-learn/scipy: F1 and
Matthews are 0 when undefined, Pearson/Spearman are nan for constant input.
"""

from typing import Callable

import numpy as np


def _pair(labels, preds) -> tuple[np.ndarray, np.ndarray]:
  y, p = np.asarray(labels), np.asarray(preds)
  if y.shape != p.shape or y.ndim != 1:
    raise ValueError(f"labels {y.shape} and preds {p.shape} must be equal "
                     "length vectors")
  if y.size == 0:
    raise ValueError("no examples")
  return y, p


def accuracy(labels, preds) -> float:
  """Fraction of exact matches."""
  y, p = _pair(labels, preds)
  return float(np.mean(y == p))


def f1(labels, preds, positive=1) -> float:
  """Binary F1 of class `positive`: 2TP / (2TP + FP + FN); 0 if undefined."""
  y, p = _pair(labels, preds)
  tp = np.sum((y == positive) & (p == positive))
  denom = 2 * tp + np.sum((y != positive) & (p == positive)) + np.sum(
      (y == positive) & (p != positive))
  return float(2 * tp / denom) if denom else 0.0


def matthews_corrcoef(labels, preds) -> float:
  """Matthews correlation (multi-class R_K form; binary MCC for 2 classes);
  0 when undefined (a constant labels or preds vector)."""
  y, p = _pair(labels, preds)
  _, inv = np.unique(np.concatenate([y, p]), return_inverse=True)
  k = int(inv.max()) + 1
  cm = np.zeros((k, k))
  np.add.at(cm, (inv[:len(y)], inv[len(y):]), 1)
  t, q = cm.sum(axis=1), cm.sum(axis=0)  # true / predicted class counts
  n, correct = cm.sum(), np.trace(cm)
  denom = np.sqrt((n * n - q @ q) * (n * n - t @ t))
  return float((correct * n - t @ q) / denom) if denom else 0.0


def pearson(labels, preds) -> float:
  """Pearson correlation; nan if either vector is constant."""
  y, p = _pair(labels, preds)
  y = y.astype(float) - np.mean(y, dtype=float)
  p = p.astype(float) - np.mean(p, dtype=float)
  denom = np.sqrt(np.sum(y * y) * np.sum(p * p))
  if not denom:
    return float("nan")
  return float(np.clip(np.sum(y * p) / denom, -1.0, 1.0))


def rankdata(x) -> np.ndarray:
  """1-based ranks, ties get the average of their ranks (scipy's 'average')."""
  x = np.asarray(x)
  order = np.argsort(x, kind="stable")
  xs = x[order]
  bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
  avg = (bounds[:-1] + bounds[1:] + 1) / 2.0  # mean of 1-based ranks in a run
  ranks = np.empty(len(x))
  ranks[order] = np.repeat(avg, np.diff(bounds))
  return ranks


def spearman(labels, preds) -> float:
  """Spearman rank correlation (Pearson on average ranks)."""
  y, p = _pair(labels, preds)
  return pearson(rankdata(y), rankdata(p))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews": matthews_corrcoef,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}

# Metrics that are the mean of a per-example score: multibootstrap's fast path.
PER_EXAMPLE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": lambda y, p: (np.asarray(y) == np.asarray(p)).astype(float),
}


def get(name: str) -> Callable[..., float]:
  try:
    return METRICS[name]
  except KeyError:
    raise ValueError(f"unknown metric {name!r}; choose from "
                     f"{sorted(METRICS)}") from None
