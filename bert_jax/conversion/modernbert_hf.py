"""ModernBERT ↔ transformers: `config.json` and the weights of
`ModernBertModel` and `ModernBertForMaskedLM` (safetensors).

transformers' tensors map one to one onto `modernbert.py`'s parameters:
Linear weights [out, in] are our kernels transposed; `Wqkv.weight` [3H, H]
is our [H, 3, heads, head_dim] and `Wi.weight` [2I, H] our [H, 2, I] (its
first half is the input, the second the gate, as `chunk(2)`). A config
that uses a feature this model does not compute (another rotary type, an
unknown activation or architecture) is refused by name.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from bert_jax import modernbert
from bert_jax.conversion import interop
from data_prep import fileio

InteropError = interop.InteropError

HEADS = {"mlm": "ModernBertForMaskedLM", "none": "ModernBertModel"}
_FIELDS = ("vocab_size", "hidden_size", "intermediate_size",
           "num_hidden_layers", "num_attention_heads", "hidden_activation",
           "max_position_embeddings", "initializer_range",
           "initializer_cutoff_factor", "norm_eps", "norm_bias",
           "attention_bias", "mlp_bias", "classifier_bias",
           "classifier_activation", "decoder_bias", "tie_word_embeddings",
           "local_attention", "embedding_dropout", "attention_dropout",
           "mlp_dropout")
TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id",
             "sep_token_id")


def _rope_theta(hf: Mapping[str, Any], layer_type: str, source: str) -> float:
  old = {"full_attention": "global_rope_theta",
         "sliding_attention": "local_rope_theta"}[layer_type]
  rope = (hf.get("rope_parameters") or {}).get(layer_type)
  if rope is None:  # older config.json files
    default = getattr(modernbert.ModernBertConfig, old)
    return float(hf.get(old, default))
  kind = rope.get("rope_type", "default")
  if kind != "default":
    raise InteropError(f"{source}: rope_parameters.{layer_type}.rope_type="
                       f"{kind!r} is not supported (only 'default' rotary "
                       "embeddings).")
  return float(rope["rope_theta"])


def config_from_hf(hf: Mapping[str, Any], source: str
                   ) -> modernbert.ModernBertConfig:
  """A transformers ModernBERT `config.json` → our config."""
  archs = hf.get("architectures") or []
  if hf.get("model_type") != "modernbert" or any(
      a not in HEADS.values() for a in archs):
    raise InteropError(
        f"{source}: model_type={hf.get('model_type')!r}, architectures="
        f"{archs}; expected model_type 'modernbert' and "
        f"{' or '.join(HEADS.values())}.")
  defaults = modernbert.ModernBertConfig
  fields = {f: hf.get(f, getattr(defaults, f)) for f in _FIELDS}
  for f in TOKEN_IDS:  # null or a list in some files: keep ours
    if isinstance(hf.get(f), int):
      fields[f] = hf[f]
  layers = int(fields["num_hidden_layers"])
  types = hf.get("layer_types")
  if types is None:
    every = int(hf.get("global_attn_every_n_layers", 3))
    types = ["sliding_attention" if i % every else "full_attention"
             for i in range(layers)]
  try:
    return modernbert.ModernBertConfig(
        **fields, layer_types=tuple(types),
        global_rope_theta=_rope_theta(hf, "full_attention", source),
        local_rope_theta=_rope_theta(hf, "sliding_attention", source))
  except ValueError as e:
    raise InteropError(f"{source}: {e}") from None


def config_to_hf(cfg: modernbert.ModernBertConfig, heads: str = "mlm",
                 token_ids: Mapping[str, int] | None = None) -> dict:
  """Our config → a complete transformers `config.json`; `token_ids`
  (e.g. a vocab's) override the config's special-token ids, and ids outside
  the vocabulary are written as null."""
  ids = {f: getattr(cfg, f) for f in TOKEN_IDS}
  ids.update(token_ids or {})
  out = {"architectures": [HEADS[heads]], "model_type": "modernbert"}
  out.update({f: getattr(cfg, f) for f in _FIELDS})
  out.update(layer_types=list(cfg.layer_types), rope_parameters={
      "full_attention": {"rope_type": "default",
                         "rope_theta": cfg.global_rope_theta},
      "sliding_attention": {"rope_type": "default",
                            "rope_theta": cfg.local_rope_theta}},
             **{f: i if 0 <= i < cfg.vocab_size else None
                for f, i in ids.items()}, torch_dtype="float32")
  return out


def _linear_names(prefix: str, ours: str, bias: bool):
  yield f"{prefix}.weight", f"{ours}/kernel", "T"
  if bias:
    yield f"{prefix}.bias", f"{ours}/bias", ""


def _norm_names(prefix: str, ours: str, cfg):
  yield f"{prefix}.weight", f"{ours}/scale", ""
  if cfg.norm_bias:
    yield f"{prefix}.bias", f"{ours}/bias", ""


def names(cfg: modernbert.ModernBertConfig, heads: str = "mlm"):
  """(transformers name, our parameter path, layout) for every tensor;
  layout: "" as is, "T" transposed, "qkv"/"qkv_bias"/"wi"/"wi_bias"."""
  base, ours = ("model.", "model/") if heads == "mlm" else ("", "")
  out = [(f"{base}embeddings.tok_embeddings.weight",
          f"{ours}tok_embeddings/embedding", "")]
  out += _norm_names(f"{base}embeddings.norm", f"{ours}embeddings_norm", cfg)
  for i in range(cfg.num_hidden_layers):
    h, o = f"{base}layers.{i}.", f"{ours}layers_{i}/"
    if i:
      out += _norm_names(h + "attn_norm", o + "attn_norm", cfg)
    out.append((h + "attn.Wqkv.weight", o + "attn/Wqkv", "qkv"))
    if cfg.attention_bias:
      out.append((h + "attn.Wqkv.bias", o + "attn/Wqkv_bias", "qkv_bias"))
    out += _linear_names(h + "attn.Wo", o + "attn/Wo", cfg.attention_bias)
    out += _norm_names(h + "mlp_norm", o + "mlp_norm", cfg)
    out.append((h + "mlp.Wi.weight", o + "mlp/Wi", "wi"))
    if cfg.mlp_bias:
      out.append((h + "mlp.Wi.bias", o + "mlp/Wi_bias", "wi_bias"))
    out += _linear_names(h + "mlp.Wo", o + "mlp/Wo", cfg.mlp_bias)
  out += _norm_names(f"{base}final_norm", f"{ours}final_norm", cfg)
  if heads == "mlm":
    out += _linear_names("head.dense", "mlm/head_dense", cfg.classifier_bias)
    out += _norm_names("head.norm", "mlm/head_norm", cfg)
    if not cfg.tie_word_embeddings:
      out.append(("decoder.weight", "mlm/decoder", ""))
    if cfg.decoder_bias:
      out.append(("decoder.bias", "mlm/decoder_bias", ""))
  return out


def _to_ours(x: np.ndarray, layout: str, cfg) -> np.ndarray:
  n, d, i = cfg.num_attention_heads, cfg.head_dim, cfg.intermediate_size
  if layout == "T":
    return x.T
  if layout == "qkv":  # [3H, H] → [H, 3, n, d]
    return x.reshape(3, n, d, -1).transpose(3, 0, 1, 2)
  if layout == "qkv_bias":
    return x.reshape(3, n, d)
  if layout == "wi":  # [2I, H] → [H, 2, I]
    return x.reshape(2, i, -1).transpose(2, 0, 1)
  if layout == "wi_bias":
    return x.reshape(2, i)
  return x


def _to_hf(x: np.ndarray, layout: str) -> np.ndarray:
  if layout == "T":
    return x.T
  if layout == "qkv":
    return x.transpose(1, 2, 3, 0).reshape(-1, x.shape[0])
  if layout == "wi":
    return x.transpose(1, 2, 0).reshape(-1, x.shape[0])
  if layout in ("qkv_bias", "wi_bias"):
    return x.reshape(-1)
  return x


def params_from_hf(tensors: Mapping[str, np.ndarray],
                   cfg: modernbert.ModernBertConfig, source: str,
                   seed: int = 0) -> tuple[dict, list[str]]:
  """transformers' tensors (either class) → (our `ModernBertForMaskedLM`
  params, the parameters made fresh from `seed`: the MLM head when the file
  holds the encoder only). Missing, unexpected or misshapen tensors are
  refused by name."""
  heads = "mlm" if any(k.startswith("model.") for k in tensors) else "none"
  template = {k: tuple(v.shape) for k, v in interop.template(cfg).items()}
  flat, seen = {}, set()
  for hf, ours, layout in names(cfg, "mlm"):
    if heads == "none":
      if not ours.startswith("model/"):
        continue
      hf = hf[len("model."):]
    if hf not in tensors:
      raise InteropError(f"{source}: no tensor {hf} (the config says "
                         f"{_describe(cfg)}).")
    x = _to_ours(np.asarray(tensors[hf], np.float32), layout, cfg)
    if x.shape != template[ours]:
      raise InteropError(f"{source}: {hf} has shape {tensors[hf].shape}, "
                         f"which does not fit {_describe(cfg)}.")
    flat[ours], seen = x, seen | {hf}
  first = ("" if heads == "none" else "model.") + (
      "embeddings.tok_embeddings.weight")
  tied = tensors.get("decoder.weight") if cfg.tie_word_embeddings else None
  if tied is not None and not np.array_equal(np.asarray(tied),
                                             np.asarray(tensors[first])):
    raise InteropError(f"{source}: decoder.weight differs from the token "
                       "embeddings but tie_word_embeddings is true.")
  extra = sorted(k for k in tensors if k not in seen and k != "decoder.weight")
  if extra:
    raise InteropError(f"{source}: tensors this model does not have: "
                       f"{extra[:5]}{' ...' if len(extra) > 5 else ''}.")
  fresh = sorted(set(template) - set(flat))
  if fresh:  # the MLM head of an encoder-only file: ModernBERT's init
    import jax  # pylint: disable=g-import-not-at-top
    from bert_jax import families  # pylint: disable=g-import-not-at-top
    from bert_jax import models  # pylint: disable=g-import-not-at-top
    ids = np.ones((1, 4), np.int32)
    init = families.pretraining_model(cfg).init(
        jax.random.PRNGKey(seed), ids, ids, ids, np.zeros((1, 1), np.int32))
    made = models.flat_param_names(jax.tree_util.tree_map(
        lambda x: getattr(x, "value", x), init["params"],
        is_leaf=lambda x: hasattr(x, "value")))
    flat.update({k: np.asarray(made[k]) for k in fresh})
  return interop.unflatten(flat), fresh


def params_to_hf(params: Any, cfg: modernbert.ModernBertConfig,
                 heads: str = "mlm") -> dict[str, np.ndarray]:
  """Our params (of `ModernBertForMaskedLM`) → transformers' state dict for
  `HEADS[heads]`; the tied decoder weight is left to transformers."""
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  flat = {k: np.asarray(v, np.float32)
          for k, v in models.flat_param_names(params).items()}
  out = {}
  for hf, ours, layout in names(cfg, "mlm"):
    if heads == "none":
      if not ours.startswith("model/"):
        continue
      hf = hf[len("model."):]
    out[hf] = np.ascontiguousarray(_to_hf(flat[ours], layout))
  return out


def _describe(cfg) -> str:
  return (f"{cfg.num_hidden_layers} layers of {cfg.hidden_size}, "
          f"{cfg.num_attention_heads} heads, feed-forward "
          f"{cfg.intermediate_size}, vocab {cfg.vocab_size}")


def read_hf(hf_dir: str, seed: int = 0
            ) -> tuple[modernbert.ModernBertConfig, dict, list[str]]:
  """A transformers ModernBERT directory → (config, our params, fresh)."""
  path = fileio.join(hf_dir, "config.json")
  if not fileio.exists(path):
    raise InteropError(f"--hf_dir={hf_dir}: no config.json.")
  cfg = config_from_hf(json.loads(fileio.read_bytes(path)), path)
  params, fresh = params_from_hf(interop.read_tensors(hf_dir), cfg, hf_dir,
                                 seed)
  return cfg, params, fresh


def write_hf(out_dir: str, params: Any, cfg: modernbert.ModernBertConfig,
             heads: str = "mlm", token_ids: Mapping[str, int] | None = None
             ) -> list[str]:
  """A directory transformers loads as `HEADS[heads]`'s class with nothing
  missing or unexpected: config.json and model.safetensors."""
  if heads not in HEADS:
    raise InteropError(f"--heads={heads}: one of {sorted(HEADS)}.")
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
  fileio.makedirs(out_dir)
  fileio.write_atomic(fileio.join(out_dir, "model.safetensors"), save(
      params_to_hf(params, cfg, heads), metadata={"format": "pt"}))
  fileio.write_atomic(fileio.join(out_dir, "config.json"), json.dumps(
      config_to_hf(cfg, heads, token_ids), indent=2) + "\n")
  return ["model.safetensors", "config.json"]


