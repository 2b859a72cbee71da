"""Chinese whole-word masking: characters of a segmented word mask together."""

import numpy as np

from data_prep import instances
from data_prep import job
from data_prep import masking
from data_prep import pipeline
from data_prep import tokenization

# Sentences written for these tests.
TEXT = ["我们使用语言模型来预测下一个词的概率。",
        "北京大学的学生喜欢在图书馆里学习机器学习。",
        "今天天气很好，我们去公园散步吧。",
        "",
        "这个模型有一亿个参数，训练需要很多时间。",
        "研究人员发现数据质量比数量更重要。"]


def _zh_vocab(tmp_path):
  """A character vocabulary like Google's Chinese BERT (one id per char)."""
  chars = sorted({c for line in TEXT for c in line})
  path = tmp_path / "zh_vocab.txt"
  path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                            chars) + "\n", encoding="utf-8")
  return str(path)


def test_flags_mark_characters_inside_words(tmp_path):
  tok = tokenization.WordPieceTokenizer(_zh_vocab(tmp_path))
  words = ["我们", "使用", "语言", "模型", "来", "预测", "下", "一个", "词",
           "的", "概率", "。"]
  flags = tokenization.ChineseWordFlags(lambda s: words)
  enc = tok.encode_flat([TEXT[0]], with_words=True)
  chars = [tok.id_to_token[i] for i in enc.ids]
  assert "".join(chars) == TEXT[0]
  cont = flags.flags(TEXT[0], enc.normalized[0], enc.word_index)
  starts = [c for c, f in zip(chars, cont) if not f]
  assert starts == [w[0] for w in words]
  assert flags.mismatched_lines == 0


def test_jieba_words_are_masked_whole(tmp_path):
  """With jieba on real Chinese text, a masked character inside a word always
  comes with the rest of its word."""
  tok = tokenization.WordPieceTokenizer(_zh_vocab(tmp_path))
  path = tmp_path / "zh.txt"
  path.write_text("\n".join(TEXT) + "\n", encoding="utf-8")
  flags = tokenization.ChineseWordFlags()
  stats = job.corpus.ReadStats()
  docs = list(job.corpus.iter_documents(
      job.corpus.iter_text_lines(((str(path), 0, path.stat().st_size),), stats),
      tok, stats, flags))
  assert len(docs) == 2 and flags.mismatched_lines == 0
  assert docs[0].continuation.sum() > 10  # jieba found multi-char words
  cfg = pipeline.PrepConfig(vocab_file=tok.vocab_file, chinese_wwm=True,
                            max_seq_length=40, max_predictions_per_seq=8)
  spec = pipeline.masking_spec(cfg, tok)
  pool = instances.Pool.from_documents(docs)
  spans = instances.build_spans(pool, 200, 40, 0.1, 0)
  batch = instances.assemble(pool, spans, 40, tok.cls_id, tok.sep_id)
  out = masking.mask_batch(batch.tokens, batch.lengths, spec,
                           np.random.default_rng(0), batch.continuation)
  cand = ~np.isin(batch.tokens, [tok.cls_id, tok.sep_id]) & (
      np.arange(40) < batch.lengths[:, None])
  masked = np.zeros_like(cand)
  w = out.weights > 0
  masked[np.nonzero(w)[0], out.positions[w]] = True
  inner = batch.continuation[:, 1:] & cand[:, :-1]  # p continues p-1's word
  # Whole words: position p (a continuation) is masked iff p - 1 is.
  assert (masked[:, 1:][inner] == masked[:, :-1][inner]).all()
  assert (masked[:, 1:] & inner).sum() > 100  # multi-character words masked


def test_mask_batch_uses_extra_continuation():
  spec = masking.MaskingSpec(4, 0.5, 2, 3, 4, np.arange(100, dtype=np.int64),
                             None)
  toks = np.array([[2, 10, 11, 12, 13, 3]], np.int32)  # [CLS] a b c d [SEP]
  cont = np.array([[False, False, True, False, True, False]])  # ab, cd words
  rng = np.random.default_rng(0)
  for _ in range(50):
    out = masking.mask_batch(toks, np.array([6]), spec, rng, cont)
    pos = out.positions[0, :int(out.weights[0].sum())].tolist()
    assert pos in ([1, 2], [3, 4])  # round(6 * .5) = 3 -> one word fits
