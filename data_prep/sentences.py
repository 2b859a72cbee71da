"""A rule-based sentence splitter for paragraph text (TFDS, harvested docs).

Splits after `.`, `!`, `?` (optionally followed by closing quotes or
brackets) when whitespace and an upper-case letter, digit or opening quote
follow, except after common abbreviations and single initials; always splits
after the CJK full stops `。！？`. Good enough for NSP sentence boundaries; feed
pre-split text (one sentence per line) when you have a better splitter.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st vs etc e.g i.e cf al fig figs no nos vol eq eqs
approx dept est inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov
dec u.s u.k a.m p.m ph.d
""".split())

_BOUNDARY = re.compile(
    r"""[.!?]["')\]\u201d\u2019]*(\s+)(?=["'(\[\u201c\u2018]?[A-Z0-9\u00C0-\u024F])""")
_CJK_STOP = re.compile(r"(?<=[。！？])")


def split_sentences(text: str) -> list[str]:
  """Sentences of one paragraph, stripped, empty ones dropped."""
  text = " ".join(text.split())
  if not text:
    return []
  out: list[str] = []
  start = 0
  for m in _BOUNDARY.finditer(text):
    candidate = text[start:m.start(1)]
    last_word = candidate.rsplit(" ", 1)[-1].rstrip(".!?\"')]").lower()
    if last_word in _ABBREVIATIONS or (len(last_word) == 1 and
                                       last_word.isalpha()):
      continue
    out.append(candidate)
    start = m.end()
  out.append(text[start:].strip())
  return [p.strip() for s in out for p in _CJK_STOP.split(s) if p.strip()]
