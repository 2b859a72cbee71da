"""MLM-only pretraining: data_prep --nsp=False (full-length single segments),
model.nsp=False (no pooler, NSP head or loss), BertForMaskedLM export."""

import numpy as np
import pytest

from data_prep import corpus
from data_prep import instances
import tiny


def _pool(sentence_lengths):
  docs = [corpus.Document(
      np.arange(100 * d + 1, 100 * d + 1 + sum(lengths), dtype=np.int32),
      np.array(lengths), None) for d, lengths in enumerate(sentence_lengths)]
  return instances.Pool.from_documents(docs)


def test_full_sentences_fill_rows_across_documents():
  """Whole sentences in order; a [SEP] where a document ends inside a row;
  a sentence longer than a row is cut; every token once per pass."""
  pool = _pool([[3, 4], [2], [25], [1, 3]])
  spans = instances.build_full_spans(pool, 2, 14)  # 12 tokens per row
  cls, sep = 900, 901
  batch = instances.assemble_full(pool, spans, 14, cls, sep)
  rows = [r[:n].tolist() for r, n in zip(batch.tokens, batch.lengths)]
  first = rows[:len(rows) // 2]
  assert rows == first * 2  # the same instances each pass
  assert first == [
      [cls, 1, 2, 3, 4, 5, 6, 7, sep, 101, 102, sep],  # doc 0, [SEP], doc 1
      [cls, *range(201, 213), sep],  # the long sentence, cut at 12 tokens
      [cls, *range(213, 225), sep],
      [cls, 225, sep, 301, 302, 303, 304, sep]]
  inner = [t for r in first for t in r[1:-1] if t != sep]
  np.testing.assert_array_equal(inner, pool.tokens)
  assert not batch.segment_ids.any() and not batch.next_sentence_labels.any()
  assert (batch.lengths <= 14).all()


@pytest.fixture(scope="module")
def mlm_shards(tmp_path_factory, vocab_file, english_corpus):
  from data_prep import job  # pylint: disable=g-import-not-at-top
  from data_prep import pipeline  # pylint: disable=g-import-not-at-top
  d = str(tmp_path_factory.mktemp("mlm_shards"))
  meta = job.generate(
      pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=32,
                          max_predictions_per_seq=10, dupe_factor=1,
                          eval_fraction=0.1, masking="none", nsp=False),
      [english_corpus], job.Outputs(output_dir=d, num_shards=2))
  return d, meta


def test_mlm_only_trains_exports_and_finetunes(mlm_shards, tmp_path,
                                               vocab_file, tiny_shards):
  import transformers  # pylint: disable=g-import-not-at-top
  from bert_jax import settings  # pylint: disable=g-import-not-at-top
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  from bert_jax.conversion import releases  # pylint: disable=g-import-not-at-top
  d, meta = mlm_shards
  assert meta["stats"]["random_next"] == 0
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from bert_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  files = input_pipeline.list_files(f"{d}/train-*")
  ex = next(tf.data.TFRecordDataset(files).batch(100_000).map(
      input_pipeline._parse_fn(input_pipeline.DataSpec("", 32, 10, 1)))  # pylint: disable=protected-access
            .as_numpy_iterator())
  assert len(ex["input_ids"]) == meta["splits"]["train"]["instances"]
  assert not ex["segment_ids"].any() and not ex["masked_lm_weights"].any()
  # Whole sentences fill the rows: most of the 32 slots hold tokens.
  assert ex["input_mask"].sum(1).mean() > 0.7 * 32
  c = tiny.config(f"{d}/train-*", 3)
  # The modern recipe's shape (30% masks, 10 of 32), scored on Google's
  # held-out shards (15%, 5 predictions, sentence pairs): the yardstick every
  # recipe can share.
  c.phase1.update(masking="dynamic", mask_rate=0.3, max_predictions_per_seq=10,
                  eval_files=f"{tiny_shards}/eval-*")
  c.eval_batch_size, c.eval_steps = 8, 2
  with pytest.raises(settings.ConfigError, match="set --config.model.nsp"):
    train.train_and_evaluate(c, str(tmp_path / "refused"))
  c.model.nsp = False
  workdir = str(tmp_path / "run")
  result = train.train_and_evaluate(c, workdir)
  assert set(result["train"][-1]) >= {"loss", "mlm_loss", "mlm_accuracy"}
  assert not any("nsp" in k for k in result["train"][-1])
  assert result["train"][-1]["loss"] == result["train"][-1]["mlm_loss"]
  ev = result["eval"]
  assert ev["eval_examples"] == 16 and not any("nsp" in k for k in ev)
  out = str(tmp_path / "hf")
  report = releases.export_run(workdir, None, out)  # heads=auto: mlm
  assert "model.safetensors" in report["files"]
  hf, info = transformers.BertForMaskedLM.from_pretrained(
      out, output_loading_info=True)
  assert not any(info.values()), info
  assert hf.config.architectures == ["BertForMaskedLM"]
  with pytest.raises(ValueError, match="MLM-only model"):
    releases.export_run(workdir, None, str(tmp_path / "x"),
                        heads="pretraining")
  # Fine-tuning an MLM-only checkpoint starts a fresh pooler, as HF would.
  from bert_jax.downstream import finetune  # pylint: disable=g-import-not-at-top
  from configs import finetune as recipe  # pylint: disable=g-import-not-at-top
  task = tmp_path / "task"
  task.mkdir()
  for split, n in (("train", 32), ("dev", 16)):
    (task / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{'good' if i % 2 else 'bad'} day\t{'pos' if i % 2 else 'neg'}\n"
        for i in range(n)))
  summary = finetune.finetune({
      **recipe.get_config().to_dict(), "init_checkpoint": workdir,
      "task_dir": str(task), "output_dir": str(tmp_path / "ft"),
      "max_seq_length": 16, "batch_size": 16, "num_epochs": 1.0})
  assert 0.0 <= summary["final"]["accuracy"] <= 1.0 and summary["steps"] == 2
