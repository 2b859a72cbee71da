"""Tokenizer: Google's FullTokenizer semantics, checked against the original."""

import sys

import numpy as np
import pytest

from data_prep import tokenization


def _tokens(tok, text):
  return tok.tokenize(text)


@pytest.fixture(scope="module")
def uncased(vocab_file):
  return tokenization.WordPieceTokenizer(vocab_file, do_lower_case=True)


@pytest.fixture(scope="module")
def cased(vocab_file):
  return tokenization.WordPieceTokenizer(vocab_file, do_lower_case=False)


@pytest.mark.parametrize("text,lower,expected", [
    # Vectors from Google's tokenization_test.py.
    (" \tHeLLo!how  \n Are yoU?  ", True, "hello ! how are you ?"),
    ("H\u00E9llo", True, "hello"),
    (" \tHeLLo!how  \n Are yoU?  ", False, "HeLLo ! how Are yoU ?"),
    ("ah\u535A\u63A8zz", True, "ah \u535A \u63A8 zz"),
    ("a\u00A0b", True, "a b"),  # NBSP is whitespace
    ("a\u0005b", True, "ab"),  # control characters are dropped
    ("a\U0001F4A9b", True, "a\U0001F4A9b"),  # emoji: not control, not punct
    ("a$b`c^d", True, "a $ b ` c ^ d"),  # non-alphanumeric ASCII splits
    ("[MASK] x", True, "[ mask ] x"),  # no special-token matching
    ("e\u0301t\u00E9", False, "e\u0301t\u00E9"),  # cased: no accent stripping
])
def test_basic_tokenizer_spec(text, lower, expected):
  assert tokenization.basic_tokenize(text, lower).split() == expected.split()
  assert tokenization.basic_tokenize_lines([text], lower)[0].split() == (
      expected.split())


def test_wordpiece_greedy_longest_match(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                              "want", "##want", "##ed", "wa", "un",
                              "runn", "##ing", ",", "##aff", "##able"]) + "\n")
  tok = tokenization.WordPieceTokenizer(str(vocab))
  assert tok.tokenize("unwanted running") == ["un", "##want", "##ed", "runn",
                                              "##ing"]
  assert tok.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]
  assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
  # Words over 200 characters become one [UNK]; 200 exactly are split.
  assert tok.tokenize("a" * 201) == ["[UNK]"]
  assert tok.tokenize("wa" * 100) == ["[UNK]"]  # 200 chars, no ##wa piece


def test_matches_google_on_real_text(google, vocab_file, english_lines,
                                     uncased, cased):
  gtok, _ = google
  for ours, lower in ((uncased, True), (cased, False)):
    ref = gtok.FullTokenizer(vocab_file, do_lower_case=lower)
    got = [[ours.id_to_token[i] for i in ids]
           for ids in ours.encode(english_lines)]
    want = [ref.tokenize(line) for line in english_lines]
    bad = [(l, w, g) for l, w, g in zip(english_lines, want, got) if w != g]
    assert not bad, bad[:3]
    assert sum(map(len, got)) > 50_000


def _codepoint_lines(step=1):
  """Every BMP code point (and a sample above), between letters and spaces."""
  cps = [c for c in range(0x20, 0x10000, step) if not 0xD800 <= c <= 0xDFFF]
  cps += list(range(0x10000, sys.maxunicode + 1, 97))
  return ["".join(f"A{chr(c)}b {chr(c)}{chr(c)}x \u03a3{chr(c)} " if c % 7 == 0
                  else f"A{chr(c)}b {chr(c)}x " for c in cps[i:i + 64])
          for i in range(0, len(cps), 64)]


def test_matches_google_on_every_codepoint(google, vocab_file, uncased, cased):
  """Unicode categories (control, whitespace, punctuation, marks, CJK) and
  case rules agree with Google's per-character code everywhere."""
  gtok, _ = google
  lines = _codepoint_lines()
  for ours, lower in ((uncased, True), (cased, False)):
    ref = gtok.BasicTokenizer(do_lower_case=lower)
    fast = tokenization.basic_tokenize_lines(lines, lower)
    for line, got in zip(lines, fast):
      assert got.split() == ref.tokenize(line), line
    full = gtok.FullTokenizer(vocab_file, lower)
    # The first lines hold \x1c etc. (normalise-first path); later ones take
    # the per-raw-token cached path.
    for chunk in (lines[:60], lines[400:520]):
      got = ours.encode(chunk)
      want = [ours.vocab[t] for l in chunk for t in full.tokenize(l)]
      assert np.concatenate(got).tolist() == want


def test_matches_transformers_on_real_text(vocab_file, english_lines, uncased):
  """`transformers` agrees on text without special-token strings."""
  import transformers  # pylint: disable=g-import-not-at-top
  hf = transformers.BertTokenizer(vocab_file, do_lower_case=True)
  lines = [l for l in english_lines if "[" not in l][:3000]
  for line, ids in zip(lines, uncased.encode(lines)):
    if any(len(w) > 100 for w in line.split()):
      continue  # HF's max_input_chars_per_word is 100, Google's 200
    assert hf.encode(line, add_special_tokens=False) == ids.tolist(), line


def test_control_chars_that_python_splits_on_join_words(uncased):
  # Google deletes \x1c (a control char); Python's split() would split there.
  assert uncased.tokenize("un\x1cbelievable") == uncased.tokenize("unbelievable")
  assert uncased.tokenize("ab\x0ccd ef") == uncased.tokenize("abcd ef")


def test_encode_flat_lengths_and_word_index(uncased):
  enc = uncased.encode_flat(["hello world", "", "unbelievable things!"],
                            with_words=True)
  assert enc.lengths.tolist()[1] == 0
  assert len(enc.ids) == enc.lengths.sum()
  third = enc.ids[enc.lengths[0]:]
  words = [uncased.id_to_token[i] for i in third]
  assert words[-1] == "!"
  # Pieces of one word share its index; "!" is the third basic token.
  assert enc.word_index[enc.lengths[0]:][-1] == 2


def test_vocab_errors(tmp_path):
  missing = tmp_path / "no_mask.txt"
  missing.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
  with pytest.raises(tokenization.VocabError, match=r"\[MASK\]"):
    tokenization.load_tokenizer(str(missing))
  pad_late = tmp_path / "pad_late.txt"
  pad_late.write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\n[MASK]\n")
  with pytest.raises(tokenization.VocabError, match="first line"):
    tokenization.load_tokenizer(str(pad_late))
  with pytest.raises(tokenization.VocabError, match="no such file"):
    tokenization.load_tokenizer(str(tmp_path / "absent.txt"))


def test_duplicate_vocab_lines_follow_google(tmp_path):
  vocab = tmp_path / "dup.txt"
  vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhi\nhi\nyo\n")
  tok = tokenization.WordPieceTokenizer(str(vocab))
  assert tok.vocab["hi"] == 6  # later line wins, ids keep counting
  assert tok.random_ids.tolist() == [0, 1, 2, 3, 4, 6, 7]
