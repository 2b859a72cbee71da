"""Tokenizers: Google-exact BERT WordPiece (fast) and SentencePiece.

`WordPieceTokenizer` reproduces Google's `FullTokenizer` (BasicTokenizer then
WordpieceTokenizer): the text normalisation runs as a handful of C-level string
passes (`str.translate`, `re.sub`, `str.lower`, `unicodedata.normalize`) whose
character classes are built from the same `unicodedata` categories Google's code
tests one character at a time, and the greedy longest-match-first WordPiece runs
in the `tokenizers` library (Rust). Literal "[MASK]" etc. in text are split like
any other text, as in Google's code.

Every tokenizer maps a batch of text lines to arrays of vocabulary ids and knows
which ids continue a word (for whole-word masking).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import re
import sys
import unicodedata
from typing import Callable, Optional, Sequence

import numpy as np

from data_prep import fileio

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Google's BasicTokenizer treats these code point ranges as CJK ideographs.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
              (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
              (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
MAX_INPUT_CHARS_PER_WORD = 200  # Google's default (Hugging Face uses 100).
_WORD_CACHE_SIZE = 1 << 18  # distinct strings per id cache (bounds memory)


class VocabError(ValueError):
  """A vocabulary file or SentencePiece model cannot be used."""


def _ranges_class(codepoints: list[int]) -> str:
  """A regex character class body for sorted code points."""
  parts, i = [], 0
  while i < len(codepoints):
    j = i
    while j + 1 < len(codepoints) and codepoints[j + 1] == codepoints[j] + 1:
      j += 1
    a, b = re.escape(chr(codepoints[i])), re.escape(chr(codepoints[j]))
    parts.append(a if i == j else f"{a}-{b}")
    i = j + 1
  return "".join(parts)


@functools.lru_cache(maxsize=None)
def _tables():
  """Translation table and regexes equivalent to Google's per-char tests,
  from one pass over every code point's Unicode category."""
  clean = {0: None, 0xFFFD: None}
  marks, punct = [], []
  category = unicodedata.category
  for cp in range(sys.maxunicode + 1):
    cat = category(chr(cp))
    if cat[0] == "C":
      if cat in ("Cc", "Cf") and cp not in (9, 10, 13):
        clean[cp] = None
    elif cat == "Zs":
      if cp != 32:
        clean[cp] = " "
    elif cat == "Mn":
      marks.append(cp)
    elif cat[0] == "P":
      punct.append(cp)
  for cp in (9, 10, 13):  # tab, newline, carriage return are whitespace
    clean[cp] = " "
  ascii_punct = [c for c in range(33, 127) if not chr(c).isalnum()]
  punct = sorted(set(punct) | set(ascii_punct))
  cjk = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in CJK_RANGES)
  return {
      "clean": clean,
      "ascii_punct": re.compile(r"([!-/:-@\[-`{-~])"),
      "special": re.compile(r"[\x00-\x09\x0b-\x1f\x7f]|[^\x00-\x7f]+"),
      "cjk": re.compile(f"[{cjk}]"),
      "mn": re.compile(f"[{_ranges_class(marks)}]+"),
      "punct": re.compile(f"[{_ranges_class(punct)}]"),
  }


def basic_tokenize(text: str, do_lower_case: bool = True) -> str:
  """Google's BasicTokenizer; returns the tokens joined by single-ish spaces.

  Equivalent to `" ".join(BasicTokenizer(do_lower_case).tokenize(text))` up to
  whitespace: `.split()` of the result gives Google's token list. The passes
  run over the whole string; lowercasing, NFD and mark removal commute with
  Google's per-token application because whitespace bounds every context.
  """
  t = _tables()
  text = text.translate(t["clean"])
  text = t["cjk"].sub(r" \g<0> ", text)
  if do_lower_case:
    text = unicodedata.normalize("NFD", text.lower())
    text = t["mn"].sub("", text)
  return t["punct"].sub(r" \g<0> ", text)


def basic_tokenize_lines(lines: Sequence[str],
                         do_lower_case: bool = True) -> list[str]:
  """`basic_tokenize` of many lines, fast; the results are identical.

  The lines are joined with "\\n" (which no line contains and which bounds
  every context the passes look at) and normalised in three C-level passes:
  `str.lower`, a small-class regex for ASCII punctuation, and one regex whose
  callback sends ASCII control characters and runs of non-ASCII characters
  through the exact per-character pipeline. Lines containing a capital sigma
  take the plain path: Python lowercases it by context (final sigma), and
  that context could straddle a control character the cleaning removes.
  """
  if not lines:
    return []
  joined = "\n".join(lines)
  if joined.count("\n") != len(lines) - 1:  # a line holds "\n" itself
    return [basic_tokenize(line, do_lower_case) for line in lines]
  if do_lower_case and "\u03a3" in joined:
    out = list(lines)
    plain = [i for i, line in enumerate(lines) if "\u03a3" not in line]
    for i, res in zip(plain, basic_tokenize_lines([lines[i] for i in plain])):
      out[i] = res
    for i, line in enumerate(lines):
      if "\u03a3" in line:
        out[i] = basic_tokenize(line, do_lower_case)
    return out
  t = _tables()
  if do_lower_case:
    joined = joined.lower()
  # re.split with a capturing group keeps each punctuation mark as its own
  # piece; joining with spaces isolates it without a per-match callback.
  text = " ".join(t["ascii_punct"].split(joined))
  slow = functools.partial(_basic_tokenize_run, do_lower_case=do_lower_case)
  return t["special"].sub(slow, text).split("\n")


def _basic_tokenize_run(match: re.Match, do_lower_case: bool) -> str:
  return basic_tokenize(match.group(), do_lower_case)


def read_vocab(path: str) -> dict[str, int]:
  """Google's `load_vocab`: stripped lines; a repeated token keeps its last id."""
  vocab: dict[str, int] = {}
  try:
    data = fileio.read_bytes(path)
  except (OSError, ValueError) as e:
    raise VocabError(f"--vocab_file {path}: cannot read it ({e}).") from e
  lines = data.decode("utf-8", errors="ignore").split("\n")
  if lines and lines[-1] == "":
    lines.pop()
  for index, line in enumerate(lines):
    vocab[line.strip()] = index
  if not vocab:
    raise VocabError(f"--vocab_file {path}: the file is empty.")
  return vocab


@dataclasses.dataclass
class Encoded:
  ids: np.ndarray  # int32, every line's ids back to back
  lengths: np.ndarray  # int64 [lines]
  word_index: np.ndarray | None = None  # per id: its basic token in the line
  normalized: list[str] | None = None  # BasicTokenizer output per line


# Python's str.split() splits on these, but Google deletes them as control
# characters (so "a\x1cb" is one token for Google).
_SPLIT_CONTROL = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
# Joins lines in one batch; a line that holds it takes the slow path.
_LINE_BREAK = "\x00\x1a\x00"


class _PieceCache:
  """Ids per string key, stored as one flat array with offsets (bounded).

  `reserved` keys (e.g. a line-break marker) map to a given number of zero ids
  and survive resets.
  """

  def __init__(self, reserved: dict[str, int] | None = None):
    self._reserved = dict(reserved or {})
    self.index: dict[str, int] = {}
    self._chunks: list[np.ndarray] = []
    self.lengths = np.zeros(0, np.int64)
    self.starts = np.zeros(0, np.int64)
    self._flat: np.ndarray | None = np.zeros(0, np.int32)
    for key, n in self._reserved.items():
      self._add([key], np.zeros(n, np.int32), np.array([n], np.int64))

  def _add(self, keys, ids, lens):
    total = int(self.lengths.sum())
    self.starts = np.concatenate([self.starts, total + np.cumsum(lens) - lens])
    self.lengths = np.concatenate([self.lengths, lens])
    self._chunks.append(ids)
    self._flat = None
    base = len(self.index)
    self.index.update(zip(keys, range(base, base + len(keys))))

  def lookup(self, keys: list[str], compute) -> np.ndarray:
    """Cache index of each key; `compute(missing) -> (ids, lengths)` fills
    the gaps."""
    idx = np.fromiter(map(self.index.get, keys, itertools.repeat(-1)),
                      np.int64, len(keys))
    if len(idx) and idx.min() < 0:
      holes = np.flatnonzero(idx < 0)
      missing = list(dict.fromkeys(keys[i] for i in holes))
      if (len(self.index) + len(missing) > _WORD_CACHE_SIZE and
          len(self.index) > len(self._reserved)):
        self.__init__(self._reserved)
        return self.lookup(keys, compute)
      ids, lens = compute(missing)
      self._add(missing, ids, lens)
      get = self.index.__getitem__
      idx[holes] = np.fromiter((get(keys[i]) for i in holes), np.int64,
                               len(holes))
    return idx

  def expand(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cache indices → (concatenated ids, position of each id's key)."""
    if self._flat is None:
      self._flat = np.concatenate(self._chunks)
      self._chunks = [self._flat]
    lens = self.lengths[idx]
    owner = np.repeat(np.arange(len(idx)), lens)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(lens) - lens, lens)
    return self._flat[self.starts[idx][owner] + within], owner


class _BaseTokenizer:
  """Shared fields: special ids, word-continuation table, fingerprint."""

  kind: str
  vocab_size: int
  cls_id: int
  sep_id: int
  mask_id: int
  pad_id: int
  unk_id: int
  continuation: np.ndarray  # bool[vocab_size]: id continues the previous word.
  random_ids: np.ndarray  # ids Google's masker draws replacements from.
  fingerprint: str  # sha256 of the vocab / model file.

  def encode_flat(self, lines: Sequence[str],
                  with_words: bool = False) -> "Encoded":
    """All lines' ids back to back, with per-line lengths (and, if asked and
    supported, each id's basic-token index in its line)."""
    raise NotImplementedError

  def encode(self, lines: Sequence[str]) -> list[np.ndarray]:
    """Ids per line."""
    enc = self.encode_flat(lines)
    return np.split(enc.ids, np.cumsum(enc.lengths)[:-1]) if len(lines) else []

  def describe(self) -> dict:
    return {"kind": self.kind, "vocab_size": self.vocab_size,
            "sha256": self.fingerprint, "do_lower_case": self.do_lower_case}


class WordPieceTokenizer(_BaseTokenizer):
  """Google's FullTokenizer(vocab_file, do_lower_case), fast."""

  kind = "wordpiece"

  def __init__(self, vocab_file: str, do_lower_case: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
    self.vocab_file = vocab_file
    self.do_lower_case = do_lower_case
    self.vocab = read_vocab(vocab_file)
    missing = [t for t in SPECIAL_TOKENS if t not in self.vocab]
    if missing:
      raise VocabError(
          f"--vocab_file {vocab_file}: missing special token(s) {missing}; a "
          "BERT vocab needs one line each for [PAD], [UNK], [CLS], [SEP], "
          "[MASK] (build one with `python -m data_prep.build_vocab`).")
    if self.vocab["[PAD]"] != 0:
      raise VocabError(
          f"--vocab_file {vocab_file}: [PAD] is on line "
          f"{self.vocab['[PAD]'] + 1}; it must be the first line (id 0) "
          "because Google's TFRecord features are zero-padded.")
    self.vocab_size = max(self.vocab.values()) + 1
    self.cls_id, self.sep_id, self.mask_id, self.pad_id, self.unk_id = (
        self.vocab[t] for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"))
    self.continuation = np.zeros(self.vocab_size, bool)
    for token, i in self.vocab.items():
      self.continuation[i] = token.startswith("##")
    # Google draws `vocab_words[randint(0, len(vocab_words) - 1)]` over the
    # distinct tokens in file order and looks the word up again.
    self.random_ids = np.fromiter(self.vocab.values(), np.int64, len(self.vocab))
    self.fingerprint = hashlib.sha256(fileio.read_bytes(vocab_file)).hexdigest()
    model = models.WordPiece(
        vocab=self.vocab, unk_token="[UNK]", continuing_subword_prefix="##",
        max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD)
    self._tok = Tokenizer(model)
    self._tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    self._raw_cache = _PieceCache({_LINE_BREAK: 0})  # raw token -> ids
    self._word_cache = _PieceCache()  # basic token -> ids
    _tables()  # build the character tables now, not in the first batch
    self.id_to_token = {i: t for t, i in self.vocab.items()}

  def _pieces(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """WordPiece ids of (already normalised) words, in Rust: (ids back to
    back, count per word)."""
    pieces = [e.ids for e in self._tok.encode_batch_fast(
        words, add_special_tokens=False)]
    lens = np.fromiter(map(len, pieces), np.int64, len(pieces))
    return (np.fromiter(itertools.chain.from_iterable(pieces), np.int32,
                        int(lens.sum())), lens)

  def _raw_pieces(self, raw: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Full-pipeline ids of whitespace-free raw tokens, through the basic
    token cache (raw variants such as "Array," and "array." share pieces)."""
    words = [n.split() for n in basic_tokenize_lines(raw, self.do_lower_case)]
    counts = np.fromiter(map(len, words), np.int64, len(words))
    wid = self._word_cache.lookup(list(itertools.chain.from_iterable(words)),
                                  self._pieces)
    ids, _ = self._word_cache.expand(wid)
    per_word = self._word_cache.lengths[wid]
    lens = np.bincount(np.repeat(np.arange(len(raw)), counts), per_word,
                       len(raw)).astype(np.int64)
    return ids, lens

  def encode_flat(self, lines: Sequence[str],
                  with_words: bool = False) -> Encoded:
    """Ids of all lines back to back.

    Google's pipeline maps each whitespace-separated raw token independently
    (every context it looks at ends at whitespace), so ids are cached per raw
    token and only unseen tokens are normalised and split. Lines holding a
    control character that Python's `split` treats as whitespace (Google
    deletes it, joining its neighbours), and `with_words=True` (Chinese WWM
    needs each id's basic token), take the normalise-first path.
    """
    joined = f" {_LINE_BREAK} ".join(lines)
    if with_words or _SPLIT_CONTROL.search(joined) or (
        joined.count(_LINE_BREAK) != len(lines) - 1):
      normalized = basic_tokenize_lines(lines, self.do_lower_case)
      words_per_line = [line.split() for line in normalized]
      counts = np.fromiter(map(len, words_per_line), np.int64, len(lines))
      words = list(itertools.chain.from_iterable(words_per_line))
      cache, compute = self._word_cache, self._pieces
      wid = cache.lookup(words, compute)
    else:
      # One split of the whole batch; a marker word (0 ids) ends each line.
      normalized = None
      cache = self._raw_cache
      wid = cache.lookup(joined.split(), self._raw_pieces)
      is_break = wid == cache.index[_LINE_BREAK]
      line_of = np.cumsum(is_break)
      counts = np.bincount(line_of[~is_break], minlength=len(lines))
      wid = wid[~is_break]
    ids, word_of_token = cache.expand(wid)
    lengths = np.bincount(np.repeat(np.arange(len(lines)), counts),
                          cache.lengths[wid], len(lines)).astype(np.int64)
    word_index = None
    if with_words:
      word_first = np.cumsum(counts) - counts
      line_of_word = np.repeat(np.arange(len(lines)), counts)
      word_index = word_of_token - word_first[line_of_word[word_of_token]]
    return Encoded(ids, lengths, word_index, normalized)

  def tokenize(self, text: str) -> list[str]:
    """Token strings, as Google's `FullTokenizer.tokenize`."""
    return [self.id_to_token[i] for i in self.encode([text])[0]]


class SentencePieceTokenizer(_BaseTokenizer):
  """A SentencePiece model with BERT's special pieces (ALBERT-style)."""

  kind = "sentencepiece"

  def __init__(self, model_file: str, do_lower_case: bool = True):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    self.do_lower_case = do_lower_case
    self.vocab_file = model_file
    try:
      proto = fileio.read_bytes(model_file)
      self._sp = spm.SentencePieceProcessor(model_proto=proto)
    except (OSError, RuntimeError, ValueError) as e:
      raise VocabError(f"--vocab_file {model_file}: not a readable "
                       f"SentencePiece model ({e}).") from e
    self.vocab_size = self._sp.get_piece_size()
    ids = {}
    for name, alternatives in (("[CLS]", ("[CLS]", "<cls>")),
                               ("[SEP]", ("[SEP]", "<sep>")),
                               ("[MASK]", ("[MASK]", "<mask>")),
                               ("[PAD]", ("[PAD]", "<pad>"))):
      found = [self._sp.piece_to_id(p) for p in alternatives
               if self._sp.piece_to_id(p) != self._sp.unk_id()
               or p == self._sp.id_to_piece(self._sp.unk_id())]
      if not found:
        raise VocabError(
            f"--vocab_file {model_file}: the SentencePiece model has no "
            f"{name} piece (looked for {alternatives}); train it with "
            "`python -m data_prep.build_vocab --model=sentencepiece`.")
      ids[name] = found[0]
    self.cls_id, self.sep_id, self.mask_id, self.pad_id = (
        ids["[CLS]"], ids["[SEP]"], ids["[MASK]"], ids["[PAD]"])
    self.unk_id = self._sp.unk_id()
    if self.pad_id != 0:
      raise VocabError(f"--vocab_file {model_file}: the pad piece has id "
                       f"{self.pad_id}; it must be 0 (features are zero-padded).")
    pieces = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
    special = {self.cls_id, self.sep_id, self.mask_id, self.pad_id, self.unk_id}
    self.continuation = np.array(
        [not p.startswith("\u2581") and i not in special and
         not self._sp.is_control(i) for i, p in enumerate(pieces)], bool)
    self.random_ids = np.arange(self.vocab_size, dtype=np.int64)
    self.fingerprint = hashlib.sha256(proto).hexdigest()
    self.id_to_token = dict(enumerate(pieces))

  def _prep(self, lines):
    return [line.lower() for line in lines] if self.do_lower_case else list(lines)

  def encode_flat(self, lines: Sequence[str],
                  with_words: bool = False) -> Encoded:
    if with_words:
      raise ValueError("--chinese_wwm needs the WordPiece tokenizer (one "
                       "token per CJK character).")
    pieces = self._sp.encode(self._prep(lines))
    lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
    return Encoded(np.fromiter(itertools.chain.from_iterable(pieces), np.int32,
                               int(lengths.sum())), lengths)

  def tokenize(self, text: str) -> list[str]:
    return [self.id_to_token[i] for i in self.encode([text])[0]]


class HFJsonTokenizer(_BaseTokenizer):
  """A Hugging Face `tokenizer.json` (e.g. ModernBERT's byte-level BPE), run
  by the `tokenizers` library with its own normalizer and pre-tokenizer
  (`do_lower_case` does not apply; it is recorded as False). Words for
  whole-word masking start at pieces with a word-start marker: `Ġ`
  (byte-level BPE), `▁` (Metaspace) or, for WordPiece models, any piece not
  starting with `##`. A byte-level tokenizer that adds no prefix space gets
  one before each line, so that every sentence starts a word as it does in
  running text. Padding positions hold 0 and are masked whatever the
  tokenizer's pad id."""

  kind = "hf_json"
  _SPECIALS = (("cls", ("[CLS]", "<s>", "<cls>")),
               ("sep", ("[SEP]", "</s>", "<sep>")),
               ("mask", ("[MASK]", "<mask>")), ("pad", ("[PAD]", "<pad>")),
               ("unk", ("[UNK]", "<unk>")))

  def __init__(self, path: str, do_lower_case: bool = False):
    import tokenizers  # pylint: disable=g-import-not-at-top
    del do_lower_case  # the tokenizer's normalizer decides
    self.do_lower_case = False
    self.vocab_file = path
    raw = fileio.read_bytes(path)
    try:
      self._tok = tokenizers.Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise VocabError(f"--vocab_file {path}: not a readable tokenizer.json "
                       f"({e}).") from e
    vocab = self._tok.get_vocab(with_added_tokens=True)
    self.vocab_size = max(vocab.values()) + 1
    for name, alternatives in self._SPECIALS:
      found = [vocab[t] for t in alternatives if t in vocab]
      if not found:
        raise VocabError(f"--vocab_file {path}: the tokenizer has no {name} "
                         f"token (looked for {alternatives}).")
      setattr(self, f"{name}_id", found[0])
    pieces = {i: t for t, i in vocab.items()}
    model = type(self._tok.model).__name__
    special = {self.cls_id, self.sep_id, self.mask_id, self.pad_id,
               self.unk_id} | {i for t, i in vocab.items() if t in {
                   a.content for a in self._tok.get_added_tokens_decoder(
                   ).values()}}
    def continues(i):
      p = pieces.get(i, "")
      if i in special or not p:
        return False
      if model == "WordPiece":
        return p.startswith("##")
      return not p.startswith(("\u0120", "\u2581"))
    self.continuation = np.array([continues(i) for i in range(self.vocab_size)],
                                 bool)
    self.random_ids = np.array(sorted(set(range(self.vocab_size)) - special),
                               np.int64)
    self.fingerprint = hashlib.sha256(raw).hexdigest()
    self.id_to_token = pieces
    pre = json.loads(raw).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre else []
    self._prefix = " " if any(
        p.get("type") == "ByteLevel" and not p.get("add_prefix_space", True)
        for p in steps) else ""

  def encode_flat(self, lines: Sequence[str],
                  with_words: bool = False) -> Encoded:
    if with_words:
      raise ValueError("--chinese_wwm needs the WordPiece tokenizer (one "
                       "token per CJK character).")
    out = self._tok.encode_batch([self._prefix + line for line in lines],
                                 add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in out), np.int64, len(out))
    return Encoded(np.fromiter(itertools.chain.from_iterable(
        e.ids for e in out), np.int32, int(lengths.sum())), lengths)

  def tokenize(self, text: str) -> list[str]:
    return self._tok.encode(self._prefix + text,
                            add_special_tokens=False).tokens


def load_tokenizer(vocab_file: str, do_lower_case: bool = True,
                   kind: str = "auto") -> _BaseTokenizer:
  """`kind`: wordpiece | sentencepiece | hf_json | auto (by file name:
  `.model` SentencePiece, `.json` a Hugging Face tokenizer.json)."""
  if not fileio.exists(vocab_file):
    raise VocabError(f"--vocab_file {vocab_file}: no such file.")
  if kind == "auto":
    kind = ("sentencepiece" if vocab_file.endswith(".model") else
            "hf_json" if vocab_file.endswith(".json") else "wordpiece")
  if kind == "wordpiece":
    return WordPieceTokenizer(vocab_file, do_lower_case)
  if kind == "sentencepiece":
    return SentencePieceTokenizer(vocab_file, do_lower_case)
  if kind == "hf_json":
    return HFJsonTokenizer(vocab_file, do_lower_case)
  raise VocabError(f"--tokenizer={kind}: expected wordpiece, sentencepiece, "
                   "hf_json or auto.")


class ChineseWordFlags:
  """Marks CJK characters that continue a word, for Chinese whole-word masking.

  Google's tokenizer makes every CJK ideograph its own token, so `##`-based
  whole-word masking never groups Chinese characters. A word segmenter (jieba by
  default, offline; HFL's Chinese BERT-wwm used LTP) splits each line into
  words; a CJK character that is not the first character of its word is a
  continuation and joins the group of the token before it.
  """

  def __init__(self, segmenter: Optional[Callable[[str], list[str]]] = None):
    self._segment = segmenter or _jieba_segmenter()
    self._cjk = _tables()["cjk"]
    self.mismatched_lines = 0

  def flags(self, line: str, normalized: str, word_ids: np.ndarray) -> np.ndarray:
    """bool per token: True where the token is a CJK char continuing a word."""
    cont_chars = []
    for word in self._segment(line):
      first = True
      for ch in word:
        if self._cjk.fullmatch(ch):
          cont_chars.append(not first)
        first = False
    words = normalized.split()
    cjk_word = np.array([len(w) == 1 and bool(self._cjk.fullmatch(w))
                         for w in words] + [False], bool)
    out = np.zeros(len(word_ids), bool)
    if not len(word_ids):
      return out
    token_is_cjk = cjk_word[word_ids]
    if int(token_is_cjk.sum()) != len(cont_chars):
      self.mismatched_lines += 1
      return out
    out[token_is_cjk] = cont_chars
    return out


def _jieba_segmenter() -> Callable[[str], list[str]]:
  import logging  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  try:
    import jieba  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("--chinese_wwm needs `jieba` (pip install jieba), or pass "
                      "a segmenter function.") from e
  jieba.setLogLevel(logging.WARNING)
  jieba.dt.tmp_dir = tempfile.gettempdir()
  return jieba.lcut
