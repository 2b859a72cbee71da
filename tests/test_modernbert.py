"""ModernBERT against transformers' ModernBertModel / ModernBertForMaskedLM:
randomly initialised small models, several layer patterns, sequences longer
and shorter than the local window, padding; the export round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import modernbert
from bert_jax.conversion import modernbert_hf

TOL = 1e-5

VARIANTS = {
    # the published pattern (global every third layer), window 8 of 24
    "default": dict(num_hidden_layers=4, local_attention=8),
    # all local but the first, biases everywhere, untied decoder, tanh GELU
    "biases_untied": dict(num_hidden_layers=3, local_attention=6,
                          layer_types=["full_attention", "sliding_attention",
                                       "sliding_attention"],
                          attention_bias=True, mlp_bias=True, norm_bias=True,
                          classifier_bias=True, decoder_bias=False,
                          tie_word_embeddings=False,
                          hidden_activation="gelu_pytorch_tanh"),
    # all global: the window never matters
    "global": dict(num_hidden_layers=2, layer_types=["full_attention"] * 2,
                   global_rope_theta=1000.0),
}


def _hf(**over):
  fields = dict(vocab_size=300, hidden_size=64, intermediate_size=96,
                num_attention_heads=4, max_position_embeddings=128,
                pad_token_id=0, bos_token_id=1, eos_token_id=2,
                cls_token_id=1, sep_token_id=2)
  rope = {k: over.pop(k) for k in ("global_rope_theta",) if k in over}
  cfg = transformers.ModernBertConfig(**fields, **over)
  if rope:
    cfg.rope_parameters["full_attention"]["rope_theta"] = rope[
        "global_rope_theta"]
  torch.manual_seed(0)
  model = transformers.ModernBertForMaskedLM(cfg).eval()
  with torch.no_grad():  # non-trivial norms and biases
    for name, p in model.named_parameters():
      if "norm" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  return cfg, model


def _batch(seq=24, lengths=(24, 17, 5)):
  rng = np.random.default_rng(1)
  ids = rng.integers(3, 300, (len(lengths), seq))
  mask = (np.arange(seq)[None] < np.array(lengths)[:, None]).astype(np.int64)
  return ids * mask, mask


def _ours(cfg, model, ids, mask):
  ours = modernbert_hf.config_from_hf(cfg.to_dict(), "test")
  params, fresh = modernbert_hf.params_from_hf(
      {k: v.detach().numpy() for k, v in model.state_dict().items()}, ours,
      "test")
  assert not fresh
  net = modernbert.ModernBertForMaskedLM(ours)
  ids_j, mask_j = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
  hidden = net.apply({"params": params}, ids_j, mask_j,
                     method=lambda m, i, k: m.model(i, k))
  logits = net.apply({"params": params}, ids_j, mask_j,
                     method=modernbert.ModernBertForMaskedLM.logits)
  return ours, params, np.asarray(hidden), np.asarray(logits)


def _theirs(model, ids, mask):
  """(final hidden states, MLM logits) of a ModernBertForMaskedLM."""
  args = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  with torch.no_grad():
    return (model.model(**args).last_hidden_state.numpy(),
            model(**args).logits.numpy())


def _close(a, b, mask):
  real = mask.astype(bool)  # padded positions are not defined
  np.testing.assert_allclose(a[real], b[real], atol=TOL, rtol=TOL)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_equals_transformers_and_round_trips(variant, tmp_path):
  cfg, model = _hf(attn_implementation="eager", **VARIANTS[variant])
  for seq, lengths in ((24, (24, 17, 5)), (6, (6, 3))):  # above, below window
    ids, mask = _batch(seq, lengths)
    ours, params, hidden, logits = _ours(cfg, model, ids, mask)
    want_hidden, want_logits = _theirs(model, ids, mask)
    _close(hidden, want_hidden, mask)
    _close(logits, want_logits, mask)
  # Export: transformers loads it with nothing missing or unexpected, and
  # computes the same; the encoder alone loads as ModernBertModel.
  out = str(tmp_path / "hf")
  modernbert_hf.write_hf(out, params, ours)
  back, info = transformers.ModernBertForMaskedLM.from_pretrained(
      out, output_loading_info=True, attn_implementation="eager")
  assert not any(info.values()), info
  ids, mask = _batch()
  _close(_theirs(back.eval(), ids, mask)[1], _theirs(model, ids, mask)[1],
         mask)
  enc = str(tmp_path / "enc")
  modernbert_hf.write_hf(enc, params, ours, heads="none")
  base, info = transformers.ModernBertModel.from_pretrained(
      enc, output_loading_info=True)
  assert not any(info.values()), info
  with torch.no_grad():
    got = base.eval()(input_ids=torch.tensor(ids),
                      attention_mask=torch.tensor(mask)).last_hidden_state
  _close(got.numpy(), _theirs(model, ids, mask)[0], mask)
  # Read back from the directory: the same parameters; from the encoder
  # alone, the same encoder and a fresh head.
  again_cfg, again, fresh = modernbert_hf.read_hf(out)
  assert again_cfg == ours and not fresh
  for a, b in zip(jax.tree_util.tree_leaves(again),
                  jax.tree_util.tree_leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  _, encoder, fresh = modernbert_hf.read_hf(enc)
  assert fresh and all(k.startswith("mlm/") for k in fresh)
  for a, b in zip(jax.tree_util.tree_leaves(encoder["model"]),
                  jax.tree_util.tree_leaves(params["model"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gathered_head_and_fused_loss_equal_the_dense_logits():
  """The pretraining interface (`models.BertForPreTraining`'s): the head on
  the gathered positions only, and the fused loss, agree with the dense
  logits."""
  from bert_jax import losses  # pylint: disable=g-import-not-at-top
  cfg, model = _hf(**VARIANTS["default"])
  ids, mask = _batch()
  ours, params, _, dense = _ours(cfg, model, ids, mask)
  net = modernbert.ModernBertForMaskedLM(ours)
  pos = jnp.asarray([[1, 5, 20], [0, 9, 16], [1, 2, 3]], jnp.int32)
  labels = jnp.asarray(ids[np.arange(3)[:, None], np.asarray(pos)], jnp.int32)
  args = (jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32),
          jnp.zeros_like(jnp.asarray(ids, jnp.int32)), pos)
  logits, nsp = net.apply({"params": params}, *args)
  assert nsp is None
  want = dense[np.arange(3)[:, None], np.asarray(pos)]
  np.testing.assert_allclose(np.asarray(logits), want, atol=TOL, rtol=TOL)
  (nll, hit), _ = net.apply({"params": params}, *args, masked_lm_ids=labels)
  ref_nll, ref_hit = losses.nll_and_hit(jnp.asarray(want), labels)[:2]
  np.testing.assert_allclose(np.asarray(nll), np.asarray(ref_nll), atol=1e-4)
  np.testing.assert_array_equal(np.asarray(hit), np.asarray(ref_hit))


def test_initialisation_is_modernberts():
  cfg = modernbert.ModernBertConfig(vocab_size=500, hidden_size=64,
                                    intermediate_size=128,
                                    num_hidden_layers=8, num_attention_heads=4)
  net = modernbert.ModernBertForMaskedLM(cfg)
  ids = jnp.ones((1, 8), jnp.int32)
  params = jax.tree_util.tree_map(
      lambda x: getattr(x, "value", x),
      net.init(jax.random.PRNGKey(0), ids, ids, ids,
               jnp.zeros((1, 2), jnp.int32))["params"],
      is_leaf=lambda x: hasattr(x, "value"))
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  flat = {k: np.asarray(v) for k, v in models.flat_param_names(params).items()}
  out = 0.02 / np.sqrt(2 * 8)
  trunc = 0.8796  # std of a normal cut at ±2σ, per unit σ
  for name, std in (("model/tok_embeddings/embedding", 0.02),
                    ("model/layers_1/attn/Wqkv", 0.02),
                    ("model/layers_1/mlp/Wi", 0.02),
                    ("model/layers_1/attn/Wo/kernel", out),
                    ("model/layers_1/mlp/Wo/kernel", out),
                    ("mlm/head_dense/kernel", out)):
    x = flat[name]
    assert np.abs(x).max() <= 2 * std + 1e-7, name  # cut at ±2σ
    assert abs(x.std() / (trunc * std) - 1) < 0.1, name
  assert np.all(flat["model/final_norm/scale"] == 1)
  assert not any("bias" in k and "decoder" not in k for k in flat)
  assert "model/layers_0/attn_norm/scale" not in flat  # layer 0: identity
  assert np.all(flat["mlm/decoder_bias"] == 0)


def test_unsupported_features_are_refused_by_name():
  cfg, _ = _hf(num_hidden_layers=2)
  d = cfg.to_dict()
  d["rope_parameters"]["full_attention"].update(rope_type="yarn", factor=2.0)
  with pytest.raises(modernbert_hf.InteropError,
                     match=r"rope_parameters.full_attention.rope_type='yarn'"):
    modernbert_hf.config_from_hf(d, "c.json")
  d = cfg.to_dict()
  d["hidden_activation"] = "quick_gelu"
  with pytest.raises(modernbert_hf.InteropError,
                     match=r"c.json: model.hidden_activation='quick_gelu'"):
    modernbert_hf.config_from_hf(d, "c.json")
  d = {**cfg.to_dict(), "architectures": ["ModernBertForTokenClassification"]}
  with pytest.raises(modernbert_hf.InteropError, match="architectures"):
    modernbert_hf.config_from_hf(d, "c.json")
  ours = modernbert_hf.config_from_hf(cfg.to_dict(), "c.json")
  with pytest.raises(modernbert_hf.InteropError,
                     match=r"no tensor model.embeddings.tok_embeddings.weight"):
    modernbert_hf.params_from_hf({"model.x": np.zeros(1)}, ours, "w")
  with pytest.raises(modernbert_hf.InteropError, match=r"has shape \(7,\)"):
    modernbert_hf.params_from_hf(
        {"model.embeddings.tok_embeddings.weight": np.zeros(7)}, ours, "w")


def test_import_and_export_through_a_workdir(tmp_path):
  """`convert import_hf` of a ModernBertForMaskedLM (with its tokenizer.json)
  makes a workdir whose checkpoint exports back to the same model."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  from bert_jax import runs  # pylint: disable=g-import-not-at-top
  from bert_jax.conversion import releases  # pylint: disable=g-import-not-at-top
  cfg, model = _hf(**VARIANTS["default"])
  src = tmp_path / "src"
  model.save_pretrained(src)
  vocab = {"[UNK]": 0, **{chr(97 + i): i + 1 for i in range(26)}}
  tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[],
                                             unk_token="[UNK]")).save(
                                                 str(src / "tokenizer.json"))
  report = releases.import_hf(str(src), str(tmp_path / "w"))
  assert report["initialised_fresh"] == []
  run = runs.open_run(str(tmp_path / "w"))
  assert isinstance(run.model_config, modernbert.ModernBertConfig)
  assert run.vocab()[0].endswith("tokenizer.json")
  out = tmp_path / "out"
  files = releases.export_run(str(tmp_path / "w"), None, str(out))["files"]
  assert "tokenizer.json" in files
  back = transformers.ModernBertForMaskedLM.from_pretrained(out).eval()
  ids, mask = _batch()
  _close(_theirs(back, ids, mask)[1], _theirs(model, ids, mask)[1], mask)
  with pytest.raises(modernbert_hf.InteropError, match="no NSP head"):
    releases.export_run(str(tmp_path / "w"), None, str(tmp_path / "x"),
                        heads="pretraining")
  with pytest.raises(modernbert_hf.InteropError, match="use export_hf"):
    releases.export_run(str(tmp_path / "w"), None, str(tmp_path / "x"),
                        kind="tf")
  # Fine-tuning's classifier equals transformers' (head from the MLM head).
  from bert_jax.downstream import features  # pylint: disable=g-import-not-at-top
  from bert_jax.downstream import finetune  # pylint: disable=g-import-not-at-top
  ids, mask = _batch()
  for pooling in ("cls", "mean"):
    theirs = transformers.ModernBertForSequenceClassification.from_pretrained(
        src, num_labels=3, classifier_pooling=pooling).eval()
    net = finetune.classifier(run.model_config, 3, 0.0, pooling)
    params = finetune.init_params(net, run.params(), jax.random.PRNGKey(0))
    np.testing.assert_allclose(
        np.asarray(params["head_dense"]["kernel"]),
        theirs.head.dense.weight.detach().numpy().T, atol=1e-7)
    params["classifier"] = {
        "kernel": theirs.classifier.weight.detach().numpy().T,
        "bias": theirs.classifier.bias.detach().numpy()}
    got = np.asarray(net.apply({"params": params}, jnp.asarray(ids),
                               jnp.asarray(mask), jnp.zeros_like(ids)))
    with torch.no_grad():
      want = theirs(input_ids=torch.tensor(ids),
                    attention_mask=torch.tensor(mask)).logits.numpy()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
  # Feature extraction: transformers' hidden_states[layer + 1].
  rows = [list(r[:m.sum()]) for r, m in zip(ids, mask)]
  got = list(features.extract(run.params(), run.model_config, rows,
                              [[0] * len(r) for r in rows], [-1, 0], 24, 2))
  with torch.no_grad():
    hs = model.model(input_ids=torch.tensor(ids),
                     attention_mask=torch.tensor(mask),
                     output_hidden_states=True).hidden_states
  for r, row in enumerate(rows):
    np.testing.assert_allclose(got[r][0], hs[-1][r, :len(row)].numpy(),
                               atol=TOL, rtol=TOL)
    np.testing.assert_allclose(got[r][1], hs[1][r, :len(row)].numpy(),
                               atol=TOL, rtol=TOL)


def test_packed_rows_equal_examples_alone():
  """Packing (`position_ids` restarting per example, `pack_ids`): each
  example of a row computes what it computes alone — no attention across
  examples, its own rotary positions, its own sliding window."""
  cfg = modernbert.ModernBertConfig(vocab_size=300, hidden_size=64,
                                    intermediate_size=96, num_hidden_layers=3,
                                    num_attention_heads=4, local_attention=6)
  net = modernbert.ModernBert(cfg)
  rng = np.random.default_rng(0)
  a, b = rng.integers(3, 300, 11), rng.integers(3, 300, 7)
  row = np.zeros((1, 24), np.int32)
  row[0, :11], row[0, 11:18] = a, b
  pack = np.zeros((1, 24), np.int32)
  pack[0, :11], pack[0, 11:18] = 1, 2
  pos = np.zeros((1, 24), np.int32)
  pos[0, :11], pos[0, 11:18] = np.arange(11), np.arange(7)
  params = net.init(jax.random.PRNGKey(0), jnp.asarray(row),
                    jnp.asarray(pack > 0))["params"]
  packed = np.asarray(net.apply({"params": params}, jnp.asarray(row),
                                jnp.asarray((pack > 0).astype(np.int32)),
                                position_ids=jnp.asarray(pos),
                                pack_ids=jnp.asarray(pack)))
  for ex, where in ((a, slice(0, 11)), (b, slice(11, 18))):
    alone = np.asarray(net.apply({"params": params}, jnp.asarray(ex[None]),
                                 jnp.ones((1, len(ex)), jnp.int32)))
    np.testing.assert_allclose(packed[0, where], alone[0], atol=1e-5)


def _tiny_config(files, steps, **over):
  from configs import modernbert as recipe  # pylint: disable=g-import-not-at-top
  c = recipe.get_config("tiny")
  c.model.update(vocab_size=30522, hidden_size=32, intermediate_size=48,
                 num_attention_heads=2, num_hidden_layers=3,
                 local_attention=8, max_position_embeddings=64)
  c.model.layer_types = ("full_attention", "sliding_attention",
                         "sliding_attention")
  c.phase1.update(train_files=f"{files}/train-*", eval_files=f"{files}/eval-*",
                  max_seq_length=32, max_predictions_per_seq=5,
                  global_batch_size=8, num_steps=steps, warmup_steps=1,
                  learning_rate=1e-3)
  c.phase2.num_steps = 0
  c.checkpoint.update(save_every=2, async_save=False, keep_forever=())
  c.log_every, c.eval_batch_size, c.eval_steps = 1, 8, 2
  c.eval_every, c.shuffle_buffer = 2, 50
  c.update(over)
  return c


def test_pretrains_on_the_pipeline_resumes_and_exports(tmp_path,
                                                      tiny_unmasked_shards):
  """configs/modernbert.py on the shards BERT uses (MLM only, masks drawn at
  30% each step): loss falls, a stopped run resumes to the same parameters,
  and the export is a ModernBertForMaskedLM computing the same logits."""
  import shutil  # pylint: disable=g-import-not-at-top
  from bert_jax import runs  # pylint: disable=g-import-not-at-top
  from bert_jax import train  # pylint: disable=g-import-not-at-top
  from bert_jax.conversion import releases  # pylint: disable=g-import-not-at-top
  config = _tiny_config(tiny_unmasked_shards, 4)
  whole = train.train_and_evaluate(config, str(tmp_path / "a"))
  assert whole["train"][-1]["loss"] < whole["train"][0]["loss"]
  assert not any("nsp" in k for k in whole["eval"])
  assert 0 <= whole["eval"]["eval_mlm_accuracy"] < 1
  assert np.isfinite(whole["eval"]["eval_mlm_loss"])
  cut = str(tmp_path / "b")
  shutil.copytree(tmp_path / "a", cut)
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")  # killed after step 2
  rest = train.train_and_evaluate(config, cut)
  assert [m["loss"] for m in rest["train"]] == [
      m["loss"] for m in whole["train"][2:]]
  a, b = (runs.open_run(str(tmp_path / d)).params() for d in ("a", "b"))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  out = str(tmp_path / "hf")
  releases.export_run(str(tmp_path / "a"), None, out)
  hf = transformers.ModernBertForMaskedLM.from_pretrained(out).eval()
  ids, mask = _batch(seq=20, lengths=(20, 9))
  ids = ids * 100  # ids of the 30,522-entry vocab
  cfg = runs.open_run(str(tmp_path / "a")).model_config
  ours = np.asarray(modernbert.ModernBertForMaskedLM(cfg).apply(
      {"params": a}, jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32),
      method=modernbert.ModernBertForMaskedLM.logits))
  _close(ours, _theirs(hf, ids, mask)[1], mask)


def test_recipe_presets_and_phase_theta():
  from bert_jax import settings  # pylint: disable=g-import-not-at-top
  from configs import modernbert as recipe  # pylint: disable=g-import-not-at-top
  shapes = {k: (c.model.num_hidden_layers, c.model.hidden_size,
                c.model.intermediate_size, c.model.num_attention_heads)
            for k, c in ((k, recipe.get_config(k)) for k in ("base", "large"))}
  assert shapes == {"base": (22, 768, 1152, 12), "large": (28, 1024, 2624, 16)}
  s = settings.read(recipe.get_config("base"))
  assert isinstance(s.model, modernbert.ModernBertConfig)
  assert [p.global_rope_theta for p in s.phases] == [10_000.0, 160_000.0]
  assert s.model.layer_types[:4] == ("full_attention", "sliding_attention",
                                     "sliding_attention", "full_attention")
  from configs import bert  # pylint: disable=g-import-not-at-top
  c = bert.get_config("tiny")
  c.phase1.global_rope_theta = 1e4
  with pytest.raises(settings.ConfigError, match="BERT has no rotary"):
    settings.read(c)
  c = recipe.get_config("tiny")
  c.model.layer_types = ("full_attention",)
  with pytest.raises(settings.ConfigError, match="layer_types has 1 entries"):
    settings.read(c)


@pytest.fixture(scope="module")
def bpe_json(tmp_path_factory, english_corpus):
  """A byte-level BPE tokenizer.json, as ModernBERT's, trained here."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(
      add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  tok.train([english_corpus], tokenizers.trainers.BpeTrainer(
      vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                      "[MASK]"]))
  path = str(tmp_path_factory.mktemp("bpe") / "tokenizer.json")
  tok.save(path)
  return path


def test_data_prep_takes_a_tokenizer_json_with_whole_words(bpe_json,
                                                           english_corpus,
                                                           tmp_path):
  """`--tokenizer=hf_json`: the ids are the tokenizer's, words start at `Ġ`
  pieces for whole-word masking, metadata.json records the file."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  from data_prep import job  # pylint: disable=g-import-not-at-top
  from data_prep import pipeline  # pylint: disable=g-import-not-at-top
  from data_prep import schema  # pylint: disable=g-import-not-at-top
  from data_prep import tokenization  # pylint: disable=g-import-not-at-top
  from bert_jax import dynamic_masking  # pylint: disable=g-import-not-at-top
  tok = tokenization.load_tokenizer(bpe_json)
  assert tok.kind == "hf_json" and tok.pad_id == 0 and tok.mask_id == 4
  line = "The whole-word masking of unbelievably long words."
  # Each line as running text (after a space): every sentence starts a word.
  ref = tokenizers.Tokenizer.from_file(bpe_json).encode(
      " " + line, add_special_tokens=False)
  np.testing.assert_array_equal(tok.encode([line])[0], ref.ids)
  starts = [not tok.continuation[i] for i in ref.ids]
  assert starts == [t.startswith("\u0120") for t in ref.tokens]
  assert starts[0] and not all(starts)  # "unbelievably": several pieces
  out = str(tmp_path / "shards")
  meta = job.generate(pipeline.PrepConfig(
      vocab_file=bpe_json, max_seq_length=32, max_predictions_per_seq=5,
      dupe_factor=1, do_whole_word_mask=True), [english_corpus],
      job.Outputs(output_dir=out, num_shards=1))
  assert meta["vocab"]["kind"] == "hf_json"
  assert meta["vocab"]["vocab_size"] == tok.vocab_size
  recorded = schema.read_metadata(f"{out}/metadata.json")["vocab"]
  assert recorded["sha256"] == tok.fingerprint
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from bert_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  ds = tf.data.TFRecordDataset(input_pipeline.list_files(f"{out}/train-*"))
  ex = next(ds.batch(4096).map(input_pipeline._parse_fn(  # pylint: disable=protected-access
      input_pipeline.DataSpec("", 32, 5, 1))).as_numpy_iterator())
  ids = dynamic_masking.restored_np(ex)
  cont = tok.continuation[ids]
  chosen = np.zeros_like(ids, bool)
  rows = np.repeat(np.arange(len(ids)), 5).reshape(-1, 5)
  w = ex["masked_lm_weights"] > 0
  chosen[rows[w], ex["masked_lm_positions"][w]] = True
  # Whole words: a chosen piece's continuation neighbours are chosen too.
  nxt = chosen[:, :-1] & cont[:, 1:] & (ex["input_mask"][:, 1:] > 0)
  assert w.sum() > 100 and np.all(chosen[:, 1:][nxt])
  # ... and its word's earlier pieces (a segment cut mid-word starts after
  # [CLS] or [SEP]; a piece after [SEP] joins the word before it, Google's).
  after_special = np.isin(ids[:, :-1], (tok.cls_id, tok.sep_id))
  prev = chosen[:, 1:] & cont[:, 1:] & ~after_special
  assert np.all(chosen[:, :-1][prev])
  vocab = dynamic_masking.load_vocab(bpe_json, "hf_json",
                                     sha256=recorded["sha256"])
  np.testing.assert_array_equal(vocab.continuation, tok.continuation)
