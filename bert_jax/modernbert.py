"""ModernBERT (Warner et al., 2024) in Flax Linen, as transformers'
`ModernBertModel` / `ModernBertForMaskedLM` compute it.

Token embeddings → LayerNorm → dropout (no positions: rotary embeddings in
attention); pre-norm layers (layer 0 has no attention norm) with a fused
Wqkv projection, rotary position embeddings whose θ is the layer type's
(`full_attention`: global θ, `sliding_attention`: local θ), and either global
or sliding-window attention (keys within `local_attention // 2` positions of
the query) by `layer_types`; a GeGLU feed-forward (Wi gives input and gate,
act(input) · gate → Wo); a final LayerNorm. Biases only where the config
asks (`attention_bias`, `mlp_bias`, `norm_bias`, `classifier_bias`,
`decoder_bias`). The MLM head is dense → activation → LayerNorm → decoder,
tied to the token embeddings unless `tie_word_embeddings=False`.
Initialisation is ModernBERT's: truncated normals cut at ±`cutoff`·σ, σ =
`initializer_range` for embeddings, Wqkv and Wi, σ / √(2·layers) for both Wo,
the head's dense and an untied decoder.

Parameter paths follow transformers' names (`layers_3/attn/Wqkv/kernel` ↔
`model.layers.3.attn.Wqkv.weight`, stored [hidden, 3, heads, head_dim]; Wi
[hidden, 2, intermediate]) and carry the logical axis names of `models.py`,
so `sharding.RULES` shards both families alike; the MLM loss and the tied
decoder are `losses.py`'s and `models.py`'s.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from bert_jax import losses
from bert_jax import models

LAYER_TYPES = ("full_attention", "sliding_attention")
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's GELU
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class ModernBertConfig:
  """transformers' ModernBertConfig fields that change the computation,
  plus how to compute."""
  vocab_size: int = 50368
  hidden_size: int = 768
  intermediate_size: int = 1152
  num_hidden_layers: int = 22
  num_attention_heads: int = 12
  hidden_activation: str = "gelu"
  max_position_embeddings: int = 8192
  initializer_range: float = 0.02
  initializer_cutoff_factor: float = 2.0
  norm_eps: float = 1e-5
  norm_bias: bool = False
  attention_bias: bool = False
  mlp_bias: bool = False
  classifier_bias: bool = False
  classifier_activation: str = "gelu"
  decoder_bias: bool = True
  tie_word_embeddings: bool = True
  # One per layer; default: global every third layer from layer 0.
  layer_types: tuple[str, ...] = ()
  global_rope_theta: float = 160_000.0
  local_rope_theta: float = 10_000.0
  local_attention: int = 128  # the whole window; keys within half of it
  embedding_dropout: float = 0.0
  attention_dropout: float = 0.0
  mlp_dropout: float = 0.0
  dtype: str = "float32"  # compute dtype; params, norms, softmax: fp32
  # The special tokens' ids, as config.json records them (no effect here;
  # ids outside the vocabulary are exported as null).
  pad_token_id: int = 50283
  bos_token_id: int = 50281
  eos_token_id: int = 50282
  cls_token_id: int = 50281
  sep_token_id: int = 50282

  def __post_init__(self):
    if not self.layer_types:
      object.__setattr__(self, "layer_types", tuple(
          "sliding_attention" if i % 3 else "full_attention"
          for i in range(self.num_hidden_layers)))
    object.__setattr__(self, "layer_types", tuple(self.layer_types))
    if len(self.layer_types) != self.num_hidden_layers:
      raise ValueError(f"model.layer_types has {len(self.layer_types)} "
                       f"entries for {self.num_hidden_layers} layers.")
    bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
    if bad:
      raise ValueError(f"model.layer_types: {bad} unknown; expected "
                       f"{' or '.join(LAYER_TYPES)}.")
    if self.hidden_size % self.num_attention_heads or self.head_dim % 2:
      raise ValueError(
          f"model.hidden_size={self.hidden_size} must be num_attention_heads "
          f"({self.num_attention_heads}) × an even head size (rotary).")
    for field in ("hidden_activation", "classifier_activation"):
      if getattr(self, field) not in ACTIVATIONS:
        raise ValueError(f"model.{field}={getattr(self, field)!r}: expected "
                         f"one of {sorted(ACTIVATIONS)}.")
    if self.local_attention < 2 or self.local_attention % 2:
      raise ValueError(f"model.local_attention={self.local_attention}: an "
                       "even window of at least 2.")

  @property
  def nsp(self) -> bool:
    return False  # MLM only: no pooler or next-sentence head

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)


def _init(cfg: ModernBertConfig, std: float, axes):
  c = cfg.initializer_cutoff_factor
  return nn.with_logical_partitioning(
      jax.nn.initializers.truncated_normal(std, lower=-c, upper=c), axes)


def _out_std(cfg: ModernBertConfig) -> float:
  return cfg.initializer_range / (2.0 * cfg.num_hidden_layers) ** 0.5


def _zeros(axes):
  return nn.with_logical_partitioning(jax.nn.initializers.zeros, axes)


def _linear(cfg, features: int, axes, std: float, bias: bool, name: str):
  return nn.Dense(features, use_bias=bias, dtype=cfg.compute_dtype,
                  param_dtype=jnp.float32, kernel_init=_init(cfg, std, axes),
                  bias_init=_zeros(axes[1:]), dot_general=models.rows_dot,
                  name=name)


def _norm(cfg: ModernBertConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=cfg.norm_eps, use_bias=cfg.norm_bias, dtype=jnp.float32,
      param_dtype=jnp.float32, name=name,
      scale_init=nn.with_logical_partitioning(jax.nn.initializers.ones,
                                              ("embed",)),
      bias_init=_zeros(("embed",)))


def rotary_tables(positions, head_dim: int, theta: float):
  """(cos, sin) [B, T, 1, D] float32 of rotary base θ at positions [B, T];
  the sine's first half negated, so that `rotary` needs no negation."""
  inv_freq = 1.0 / (theta ** (
      jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
  cos, sin = jnp.cos(freqs), jnp.sin(freqs)
  return (jnp.concatenate([cos, cos], axis=-1)[:, :, None],
          jnp.concatenate([-sin, sin], axis=-1)[:, :, None])


def rotary(x, tables):
  """Rotary position embedding of x [B, T, N, D] (rotate-half layout, as
  transformers), computed in float32."""
  cos, sin = tables
  d = x.shape[-1]
  xf = x.astype(jnp.float32)
  swapped = jnp.concatenate([xf[..., d // 2:], xf[..., :d // 2]], axis=-1)
  return (xf * cos + swapped * sin).astype(x.dtype)


class Attention(nn.Module):
  """`attn`: Wqkv → rotary on q, k → softmax attention → Wo."""
  cfg: ModernBertConfig

  @nn.compact
  def __call__(self, x, allowed, rope, deterministic: bool):
    cfg = self.cfg
    n, d = cfg.num_attention_heads, cfg.head_dim
    kernel = self.param(
        "Wqkv", _init(cfg, cfg.initializer_range,
                      ("embed", None, "heads", "kv")),
        (cfg.hidden_size, 3, n, d))
    b, t, e = x.shape  # one [B·T, H] × [H, 3·N·D] dot (2-D gradients)
    qkv = (x.reshape(b * t, e) @ kernel.reshape(e, 3 * n * d).astype(x.dtype)
           ).reshape(b, t, 3, n, d)
    if cfg.attention_bias:
      qkv = qkv + self.param("Wqkv_bias", _zeros((None, "heads", "kv")),
                             (3, n, d)).astype(x.dtype)
    q = models.constrain(rotary(qkv[:, :, 0], rope),
                         ("batch", "length", "heads", "kv"))
    k = models.constrain(rotary(qkv[:, :, 1], rope),
                         ("batch", "length", "heads", "kv"))
    v = qkv[:, :, 2]
    scores = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32)
    probs = jax.nn.softmax(scores * d ** -0.5 + allowed, axis=-1)
    probs = nn.Dropout(cfg.attention_dropout)(probs,
                                              deterministic=deterministic)
    ctx = jnp.einsum("bnqk,bknd->bqnd", probs.astype(v.dtype), v)
    ctx = ctx.reshape(*x.shape[:2], cfg.hidden_size)
    y = _linear(cfg, cfg.hidden_size, ("heads", "embed"), _out_std(cfg),
                cfg.attention_bias, "Wo")(ctx)
    return nn.Dropout(cfg.attention_dropout)(y, deterministic=deterministic)


class MLP(nn.Module):
  """`mlp`: GeGLU, Wi → act(input) · gate → dropout → Wo."""
  cfg: ModernBertConfig

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.cfg
    kernel = self.param("Wi", _init(cfg, cfg.initializer_range,
                                    ("embed", None, "mlp")),
                        (cfg.hidden_size, 2, cfg.intermediate_size))
    b, t, e = x.shape
    m = cfg.intermediate_size
    h = (x.reshape(b * t, e) @ kernel.reshape(e, 2 * m).astype(x.dtype)
         ).reshape(b, t, 2, m)
    if cfg.mlp_bias:
      h = h + self.param("Wi_bias", _zeros((None, "mlp")), (2, m)).astype(
          x.dtype)
    h = models.constrain(
        ACTIVATIONS[cfg.hidden_activation](h[:, :, 0]) * h[:, :, 1],
        ("batch", "length", "mlp"))
    h = nn.Dropout(cfg.mlp_dropout)(h, deterministic=deterministic)
    return _linear(cfg, cfg.hidden_size, ("mlp", "embed"), _out_std(cfg),
                   cfg.mlp_bias, "Wo")(h)


class Layer(nn.Module):
  """`layers_N`: x + attn(attn_norm(x)), then x + mlp(mlp_norm(x))."""
  cfg: ModernBertConfig
  index: int

  @nn.compact
  def __call__(self, x, allowed, rope, deterministic: bool):
    cfg = self.cfg
    h = x if self.index == 0 else _norm(cfg, "attn_norm")(x).astype(x.dtype)
    x = x + Attention(cfg, name="attn")(
        h, allowed, rope, deterministic)
    h = _norm(cfg, "mlp_norm")(x).astype(x.dtype)
    x = x + MLP(cfg, name="mlp")(h, deterministic)
    return models.constrain(x, ("batch", "length", "embed"))


def attention_masks(cfg: ModernBertConfig, input_mask, pack_ids=None) -> dict:
  """{layer type: [B, 1, T, T] float32 bias, 0 where a query may see the
  key, the lowest float32 elsewhere}: real
  keys (of the query's own example in packed rows), and for sliding layers
  only those within `local_attention // 2` positions."""
  t = input_mask.shape[1]
  keys = input_mask[:, None, None, :].astype(bool)
  if pack_ids is not None:
    keys = keys & (pack_ids[:, None, :, None] == pack_ids[:, None, None, :])
  i = jnp.arange(t)
  near = jnp.abs(i[:, None] - i[None, :]) <= cfg.local_attention // 2
  low = jnp.finfo(jnp.float32).min
  return {"full_attention": jnp.where(keys, 0.0, low),
          "sliding_attention": jnp.where(keys & near, 0.0, low)}


class ModernBert(nn.Module):
  """`model`: returns the final-norm hidden states [B, T, H]. Packed rows
  pass `position_ids` (restarting per example) and `pack_ids`."""
  cfg: ModernBertConfig

  @nn.compact
  def __call__(self, input_ids, input_mask, deterministic: bool = True,
               position_ids=None, pack_ids=None):
    cfg = self.cfg
    if position_ids is None:
      position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[1]),
                                      input_ids.shape)
    emb = nn.Embed(cfg.vocab_size, cfg.hidden_size, param_dtype=jnp.float32,
                   embedding_init=_init(cfg, cfg.initializer_range,
                                        ("vocab", "embed")),
                   name="tok_embeddings")
    x = _norm(cfg, "embeddings_norm")(emb(input_ids))
    x = nn.Dropout(cfg.embedding_dropout)(x, deterministic=deterministic)
    x = models.constrain(x.astype(cfg.compute_dtype),
                         ("batch", "length", "embed"))
    masks = attention_masks(cfg, input_mask, pack_ids)
    ropes = {kind: rotary_tables(position_ids, cfg.head_dim, theta)
             for kind, theta in (("full_attention", cfg.global_rope_theta),
                                 ("sliding_attention", cfg.local_rope_theta))}
    for i in range(cfg.num_hidden_layers):
      kind = cfg.layer_types[i]
      x = Layer(cfg, i, name=f"layers_{i}")(x, masks[kind], ropes[kind],
                                             deterministic)
      self.sow("intermediates", "layer_outputs", x)
    return _norm(cfg, "final_norm")(x).astype(cfg.compute_dtype)


def prediction_head(cfg: ModernBertConfig, h):
  """transformers' ModernBertPredictionHead, dense → activation → norm, as
  `head_dense` and `head_norm` of the calling module (the MLM head's and the
  classifier's, which transformers loads from the MLM head's)."""
  h = _linear(cfg, cfg.hidden_size, ("embed", "embed_out"), _out_std(cfg),
              cfg.classifier_bias, "head_dense")(h)
  h = ACTIVATIONS[cfg.classifier_activation](h)
  return _norm(cfg, "head_norm")(h).astype(cfg.compute_dtype)


class MaskedLMHead(nn.Module):
  """`head` (dense → activation → norm) and `decoder`."""
  cfg: ModernBertConfig

  @nn.compact
  def __call__(self, hidden, table, labels=None):
    """Logits [B, P, V] in float32; with `labels`, (nll, hit) [B, P]
    (`losses.decoder_nll`)."""
    cfg = self.cfg
    h = prediction_head(cfg, hidden)
    if not cfg.tie_word_embeddings:
      table = self.param("decoder", _init(cfg, _out_std(cfg),
                                          ("vocab", "embed")),
                         (cfg.vocab_size, cfg.hidden_size))
    bias = (self.param("decoder_bias", _zeros(("vocab",)), (cfg.vocab_size,))
            if cfg.decoder_bias else jnp.zeros((cfg.vocab_size,), jnp.float32))
    table = table.astype(cfg.compute_dtype)
    if labels is not None:
      return losses.decoder_nll(h, table, bias, labels.astype(jnp.int32))
    return models.tied_decoder(h, table, bias)


class ModernBertForMaskedLM(nn.Module):
  """Encoder + MLM head, with `models.BertForPreTraining`'s interface, so the
  trainer, evaluation and losses take either family: the head runs on the
  gathered `masked_lm_positions` only (transformers' `sparse_prediction`);
  there is no NSP head (the second output is None) and no token types
  (`segment_ids` is ignored). `packed`: `position_ids`, `pack_ids` (and
  `cls_positions`, unused)."""
  cfg: ModernBertConfig

  def setup(self):
    self.model = ModernBert(self.cfg)
    self.mlm = MaskedLMHead(self.cfg)

  def _table(self):
    table = self.model.variables["params"]["tok_embeddings"]["embedding"]
    return getattr(table, "value", table)  # unbox LogicallyPartitioned

  def __call__(self, input_ids, input_mask, segment_ids, masked_lm_positions,
               deterministic: bool = True, masked_lm_ids=None, **packed):
    """(MLM logits [B, P, V] float32, None); with `masked_lm_ids`,
    ((nll, hit) [B, P], None)."""
    del segment_ids
    packed.pop("cls_positions", None)
    seq = self.model(input_ids, input_mask, deterministic, **packed)
    gathered = jnp.take_along_axis(seq, masked_lm_positions[..., None], axis=1)
    return self.mlm(gathered, self._table(), masked_lm_ids), None

  def logits(self, input_ids, input_mask, deterministic: bool = True,
             **packed):
    """MLM logits at every position [B, T, V] (transformers' dense output)."""
    seq = self.model(input_ids, input_mask, deterministic, **packed)
    return self.mlm(seq, self._table())


POOLINGS = ("cls", "mean")


class ModernBertForSequenceClassification(nn.Module):
  """transformers' ModernBertForSequenceClassification: `model` → pooled
  (`cls`: the first token's final hidden state; `mean`: the mean over real
  tokens) → `head_dense` → activation → `head_norm` → dropout →
  `classifier` (with bias; ModernBERT's init: σ = hidden_size^-½, cut at
  ±`initializer_cutoff_factor`·σ). `segment_ids` is ignored (no token
  types)."""
  cfg: ModernBertConfig
  num_outputs: int
  dropout: float = 0.0  # transformers' classifier_dropout
  pooling: str = "cls"  # transformers' classifier_pooling

  @nn.compact
  def __call__(self, input_ids, input_mask, segment_ids,
               deterministic: bool = True):
    del segment_ids
    cfg = self.cfg
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r}: one of {POOLINGS}.")
    seq = ModernBert(cfg, name="model")(input_ids, input_mask, deterministic)
    if self.pooling == "cls":
      pooled = seq[:, 0]
    else:
      w = input_mask.astype(seq.dtype)[..., None]
      pooled = (seq * w).sum(1) / jnp.maximum(w.sum(1), 1)
    h = prediction_head(cfg, pooled)
    h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
    out = nn.Dense(self.num_outputs, dtype=jnp.float32,
                   param_dtype=jnp.float32,
                   kernel_init=_init(cfg, cfg.hidden_size ** -0.5,
                                     ("embed", None)),
                   bias_init=_zeros((None,)), name="classifier")
    return out(h.astype(jnp.float32))
