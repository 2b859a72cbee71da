"""Weights in other formats: Google TF-1 checkpoints and Hugging Face BERT.

Three names for every parameter:
  ours    `bert/encoder/layer_3/attention/self/query/kernel` (Flax path)
  Google  `bert/encoder/layer_3/attention/self/query/kernel` (TF variable)
  HF      `bert.encoder.layer.3.attention.self.query.weight` (PyTorch key)
Ours ↔ Google is a renaming (`models.google_name`, no transposes: Google's NSP
`output_weights` is kept [2, H] in our tree too). Google ↔ HF follows
transformers' own converter: every dense `kernel` is transposed, `gamma`/`beta`
become `weight`/`bias`, embeddings gain `.weight`.

Imports are driven by a template (the parameter tree our model would
create for the derived config), so a missing, extra or misshapen tensor is
reported by name instead of surfacing later as a bad model.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from absl import logging
import jax
import numpy as np

from bert_jax import models
from data_prep import fileio

# Our activation name → HF `hidden_act`. Google's "gelu" is the tanh
# approximation, which transformers calls "gelu_new".
ACT_TO_HF = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu",
             "tanh": "tanh"}
HF_TO_ACT = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
             "gelu_fast": "gelu", "gelu": "gelu_exact", "relu": "relu",
             "tanh": "tanh"}
# Google's bert_config.json says "gelu" for its tanh approximation.
GOOGLE_ACT = {"gelu": "gelu", "gelu_exact": "gelu", "relu": "relu",
              "tanh": "tanh"}

SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers",
                "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size")
_SKIP_TF = re.compile(r"(^|/)(adam_m|adam_v|global_step|"
                      r"AdamWeightDecayOptimizer(_1)?|beta[12]_power|"
                      r"bad_steps|good_steps|loss_scale)($|/)")


class InteropError(ValueError):
  """A checkpoint or config that cannot be converted, and why."""


# --- names -------------------------------------------------------------------
def hf_name(google: str) -> tuple[str, bool]:
  """Google variable name → (HF key, whether the array is transposed)."""
  parts = google.split("/")
  last, parents = parts[-1], parts[:-1]
  out = []
  for p in parents:
    m = re.fullmatch(r"layer_(\d+)", p)
    out.extend(["layer", m.group(1)] if m else [p])
  if last == "kernel":
    return ".".join(out + ["weight"]), True
  if last.endswith("_embeddings"):
    return ".".join(out + [last, "weight"]), False
  leaf = {"gamma": "weight", "beta": "bias", "output_bias": "bias",
          "output_weights": "weight"}.get(last, last)
  return ".".join(out + [leaf]), False


def to_named(params: Any) -> dict[str, np.ndarray]:
  """Our parameter tree → {Google name: float32 array}."""
  return {models.google_name(k): np.asarray(v, np.float32)
          for k, v in models.flat_param_names(params).items()}


def to_hf(params: Any) -> dict[str, np.ndarray]:
  """Our parameter tree → a `BertForPreTraining` state dict (tied decoder
  weights left out; transformers re-ties them on load)."""
  out = {}
  for google, value in to_named(params).items():
    key, transpose = hf_name(google)
    out[key] = np.ascontiguousarray(value.T if transpose else value)
  return out


def template(cfg) -> dict[str, jax.ShapeDtypeStruct]:
  """{our flat path: shape} of a config's pretraining model (either
  family), without allocating anything."""
  from bert_jax import families  # pylint: disable=g-import-not-at-top
  model = families.pretraining_model(cfg)
  ids = jax.ShapeDtypeStruct((1, 8), np.int32)
  pos = jax.ShapeDtypeStruct((1, 2), np.int32)
  shapes = jax.eval_shape(
      lambda i, p: model.init(jax.random.PRNGKey(0), i, i, i, p)["params"],
      ids, pos)
  shapes = jax.tree_util.tree_map(
      lambda x: getattr(x, "value", x), shapes,
      is_leaf=lambda x: hasattr(x, "value"))
  return models.flat_param_names(shapes)


def unflatten(flat: Mapping[str, Any]) -> dict:
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def from_named(named: Mapping[str, np.ndarray], cfg: models.BertConfig,
               source: str, key_of=None, rng_seed: int = 0
               ) -> tuple[dict, list[str]]:
  """{external name: array} → our parameter tree for `cfg`.

  `key_of(google_name) → (external key, transposed)`; default: Google names.
  Parameters of the pretraining heads missing from `named` are initialised
  as our model would (and listed in the result); anything else missing, any
  unused tensor, and any shape mismatch raise `InteropError`.
  """
  key_of = key_of or (lambda g: (g, False))
  shapes = template(cfg)
  flat, missing, used = {}, [], set()
  for path, shape in shapes.items():
    key, transposed = key_of(models.google_name(path))
    if key not in named:
      missing.append(path)
      continue
    value = np.asarray(named[key], np.float32)
    value = value.T if transposed else value
    if value.shape != tuple(shape.shape):
      raise InteropError(
          f"{source}: {key} has shape {tuple(named[key].shape)}, but the "
          f"config ({_describe(cfg)}) needs "
          f"{tuple(shape.shape)[::-1] if transposed else tuple(shape.shape)}."
          + _vocab_hint(path, value.shape, cfg))
    flat[path] = value
    used.add(key)
  not_heads = [m for m in missing if not m.startswith("cls_")]
  if not_heads:
    raise InteropError(f"{source}: missing encoder weights "
                       f"{[key_of(models.google_name(m))[0] for m in not_heads][:6]}"
                       f" ({len(not_heads)} in all); is this a BERT checkpoint "
                       "for this config?")
  extra = sorted(set(named) - used)
  if extra:
    raise InteropError(f"{source}: unexpected tensors {extra[:6]} "
                       f"({len(extra)} in all); not a BERT model this code "
                       "knows how to read.")
  if missing:  # pretraining heads: initialise as a fresh model would
    model = models.BertForPreTraining(cfg)
    ids = np.ones((1, 8), np.int32)
    fresh = models.flat_param_names(jax.tree_util.tree_map(
        lambda x: getattr(x, "value", x),
        model.init(jax.random.PRNGKey(rng_seed), ids, ids, ids,
                   np.zeros((1, 2), np.int32))["params"],
        is_leaf=lambda x: hasattr(x, "value")))
    for m in missing:
      flat[m] = np.asarray(fresh[m], np.float32)
  return unflatten(flat), missing


def _describe(cfg: models.BertConfig) -> str:
  return ", ".join(f"{f}={getattr(cfg, f)}" for f in SHAPE_FIELDS)


def _vocab_hint(path: str, shape, cfg) -> str:
  if "word_embeddings" in path or path.endswith("cls_predictions/output_bias"):
    return (f" The embedding table has {shape[0]} rows but vocab_size is "
            f"{cfg.vocab_size}: the vocab file and the weights disagree.")
  return ""


# --- Hugging Face ------------------------------------------------------------
def config_from_hf(hf: Mapping[str, Any], source: str) -> dict[str, Any]:
  """An HF BERT `config.json` → our model config fields."""
  model_type = hf.get("model_type", "bert")
  archs = hf.get("architectures") or []
  if model_type != "bert" or any(not a.startswith("Bert") for a in archs):
    raise InteropError(
        f"{source}: model_type={model_type!r}, architectures={archs}; only "
        "BERT (model_type 'bert', Bert* architectures) can be imported.")
  act = hf.get("hidden_act", "gelu")
  if act not in HF_TO_ACT:
    raise InteropError(f"{source}: hidden_act={act!r} is not supported; "
                       f"expected one of {sorted(HF_TO_ACT)}.")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise InteropError(f"{source}: position_embedding_type="
                       f"{hf['position_embedding_type']!r}; only 'absolute'.")
  eps = hf.get("layer_norm_eps", models.LN_EPSILON)
  if abs(eps - models.LN_EPSILON) > 1e-15:
    raise InteropError(f"{source}: layer_norm_eps={eps}; this model uses "
                       f"BERT's {models.LN_EPSILON}.")
  if hf.get("tie_word_embeddings", True) is False:
    raise InteropError(f"{source}: tie_word_embeddings=false; BERT's MLM "
                       "decoder is tied to the word embeddings.")
  return _model_fields(hf, HF_TO_ACT[act])


def _model_fields(src: Mapping[str, Any], act: str) -> dict[str, Any]:
  """Our model fields from a BERT config dict (HF's or Google's keys)."""
  out = {f: int(src.get(f, getattr(models.BertConfig, f)))
         for f in SHAPE_FIELDS}
  out.update(hidden_act=act,
             hidden_dropout_prob=float(src.get("hidden_dropout_prob", 0.1)),
             attention_probs_dropout_prob=float(
                 src.get("attention_probs_dropout_prob", 0.1)),
             initializer_range=float(src.get("initializer_range", 0.02)))
  return out


# export_hf --heads: the transformers class each writes, and the state-dict
# keys it leaves out (BertForMaskedLM has no pooler and no NSP head).
HF_HEADS = {"pretraining": ("BertForPreTraining", ()),
            "mlm": ("BertForMaskedLM", ("bert.pooler.", "cls.seq_relationship.")),
            "none": ("BertModel", ("cls.",))}


def config_to_hf(cfg: models.BertConfig, heads: str = "pretraining"
                 ) -> dict[str, Any]:
  """Our model config → a complete HF `config.json` for `HF_HEADS[heads]`'s
  class."""
  out = {"architectures": [HF_HEADS[heads][0]], "model_type": "bert"}
  out.update({f: getattr(cfg, f) for f in SHAPE_FIELDS})
  out.update(hidden_act=ACT_TO_HF[cfg.hidden_act],
             hidden_dropout_prob=cfg.hidden_dropout_prob,
             attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
             initializer_range=cfg.initializer_range,
             layer_norm_eps=models.LN_EPSILON, pad_token_id=0,
             position_embedding_type="absolute", use_cache=True,
             classifier_dropout=None, tie_word_embeddings=True,
             torch_dtype="float32")
  return out


def _hf_key(key: str) -> str:
  """Canonical HF key: `bert.` prefix on encoder weights, new LN names."""
  key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
  key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
  if not key.startswith(("bert.", "cls.")):
    key = "bert." + key
  return key


def read_hf_weights(hf_dir: str) -> dict[str, np.ndarray]:
  """A transformers BERT directory's tensors, keyed canonically; tied and
  buffer copies dropped."""
  tensors = read_tensors(hf_dir)
  out = {}
  for key, value in tensors.items():
    if key.endswith("position_ids") or key.startswith(
        "cls.predictions.decoder."):
      continue  # a buffer, and the tied copies of the embeddings / bias
    out[_hf_key(key)] = value
  decoder = tensors.get("cls.predictions.decoder.weight")
  word = out.get("bert.embeddings.word_embeddings.weight")
  if decoder is not None and word is not None and not np.array_equal(
      np.asarray(decoder), np.asarray(word)):
    raise InteropError(f"{hf_dir}: cls.predictions.decoder.weight differs "
                       "from the word embeddings; untied MLM decoders are not "
                       "BERT.")
  return out


def read_tensors(hf_dir: str) -> dict[str, np.ndarray]:
  """A transformers directory's tensors as saved (safetensors, sharded or
  not, or pytorch_model.bin), float32 / int as stored."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  d = epath.Path(hf_dir)
  tensors: dict[str, np.ndarray] = {}
  if (d / "model.safetensors.index.json").exists():
    index = json.loads((d / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
  elif (d / "model.safetensors").exists():
    files = ["model.safetensors"]
  elif (d / "pytorch_model.bin").exists():
    files = []
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise InteropError(f"{d}/pytorch_model.bin needs torch to read; install "
                         "torch or convert it to model.safetensors.") from e
    state = torch.load(str(d / "pytorch_model.bin"), map_location="cpu",
                       weights_only=True)
    tensors = {k: v.float().numpy() if v.is_floating_point() else v.numpy()
               for k, v in state.items()}
  else:
    raise InteropError(f"{d}: no model.safetensors, model.safetensors."
                       "index.json or pytorch_model.bin.")
  if files:
    from safetensors.numpy import load  # pylint: disable=g-import-not-at-top
    for f in files:
      tensors.update(load((d / f).read_bytes()))
  return tensors


def params_from_hf(hf_dir: str, cfg: models.BertConfig, seed: int = 0
                   ) -> tuple[dict, list[str]]:
  """An HF directory's weights → (our params, heads initialised fresh)."""
  named = read_hf_weights(hf_dir)
  return from_named(named, cfg, hf_dir, key_of=hf_name, rng_seed=seed)


def write_hf(out_dir: str, params: Any, cfg: models.BertConfig,
             vocab_file: str | None, do_lower_case: bool,
             heads: str = "pretraining") -> list[str]:
  """A directory `transformers` loads as `HF_HEADS[heads]`'s class, nothing
  missing or unexpected: BertForPreTraining (BertModel loads it too and
  reports the unused `cls.*` heads, as for Google's releases),
  BertForMaskedLM (`mlm`) or a BertModel-only encoder (`none`)."""
  if heads not in HF_HEADS:
    raise InteropError(f"--heads={heads}: one of {sorted(HF_HEADS)}.")
  from etils import epath  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
  out = epath.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  written = []

  def write(name: str, data: bytes | str):
    fileio.write_atomic(str(out / name), data)
    written.append(name)

  tensors = {k: v for k, v in to_hf(params).items()
             if not k.startswith(HF_HEADS[heads][1])}
  write("model.safetensors", save(tensors, metadata={"format": "pt"}))
  write("config.json", json.dumps(config_to_hf(cfg, heads), indent=2) + "\n")
  if vocab_file and vocab_file.endswith(".model"):
    logging.warning("%s is a SentencePiece model: BertTokenizer cannot read "
                    "it; copied as spiece.model, no tokenizer config.",
                    vocab_file)
    write("spiece.model", epath.Path(vocab_file).read_bytes())
  elif vocab_file:
    write("vocab.txt", epath.Path(vocab_file).read_text(encoding="utf-8"))
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]",
                "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    write("special_tokens_map.json", json.dumps(specials, indent=2) + "\n")
    write("tokenizer_config.json", json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": do_lower_case,
         "tokenize_chinese_chars": True, "strip_accents": None,
         "model_max_length": cfg.max_position_embeddings, **specials},
        indent=2) + "\n")
  return written


# --- Google TF checkpoints ---------------------------------------------------
def read_tf_checkpoint(prefix: str) -> dict[str, np.ndarray]:
  """Model variables of a TF-1 checkpoint (optimizer slots, step dropped)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.NotFoundError, ValueError) as e:
    raise InteropError(f"--tf_checkpoint={prefix}: not a readable TF "
                       f"checkpoint prefix ({e}). Give the path without "
                       ".index / .data-* (e.g. .../bert_model.ckpt).") from e
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if not _SKIP_TF.search(name)}


def write_tf_checkpoint(prefix: str, params: Any) -> None:
  """Our params → a TF-1 checkpoint with Google's variable names."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  named = to_named(params)
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(v, name=k) for k, v in named.items()]
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      saver.save(sess, prefix, write_meta_graph=False)


def config_from_google(google: Mapping[str, Any], source: str
                       ) -> dict[str, Any]:
  """Google's `bert_config.json` → our model config fields."""
  missing = [f for f in SHAPE_FIELDS if f not in google]
  if missing:
    raise InteropError(f"{source}: missing {missing}; not a bert_config.json.")
  act = google.get("hidden_act", "gelu")
  if act not in GOOGLE_ACT:
    raise InteropError(f"{source}: hidden_act={act!r}; expected one of "
                       f"{sorted(GOOGLE_ACT)}.")
  return _model_fields(google, GOOGLE_ACT[act])


def config_to_google(cfg: models.BertConfig) -> dict[str, Any]:
  if cfg.hidden_act == "gelu_exact":
    logging.warning("bert_config.json has no name for exact GELU; writing "
                    "'gelu' (Google's code would use the tanh approximation).")
  out = {f: getattr(cfg, f) for f in SHAPE_FIELDS}
  out.update(hidden_act="gelu" if cfg.hidden_act.startswith("gelu")
             else cfg.hidden_act,
             hidden_dropout_prob=cfg.hidden_dropout_prob,
             attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
             initializer_range=cfg.initializer_range)
  return out


def check_vocab(vocab_file: str, cfg: models.BertConfig) -> None:
  """The vocab must have exactly one row of the embedding table per entry."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  if vocab_file.endswith(".model"):
    return
  if vocab_file.endswith(".json"):  # a Hugging Face tokenizer.json
    tok = json.loads(epath.Path(vocab_file).read_text(encoding="utf-8"))
    ids = set((tok.get("model") or {}).get("vocab", {}).values()) | {
        t["id"] for t in tok.get("added_tokens", ())}
    if ids and max(ids) >= cfg.vocab_size:
      raise InteropError(f"--vocab_file={vocab_file} has token id {max(ids)} "
                         f"but the model's vocab_size is {cfg.vocab_size}; "
                         "use the tokenizer the checkpoint was trained with.")
    return
  # Google's load_vocab gives every line an id, so the size is the line count.
  n = len(epath.Path(vocab_file).read_text(encoding="utf-8").splitlines())
  if n != cfg.vocab_size:
    raise InteropError(f"--vocab_file={vocab_file} has {n} entries but the "
                       f"model's vocab_size is {cfg.vocab_size}; use the "
                       "vocab the checkpoint was trained with.")
