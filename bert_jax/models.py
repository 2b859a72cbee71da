"""The original BERT encoder and pretraining heads, in Flax Linen.

Architecture as Google's `modeling.py`: word + position + token-type
embeddings → LayerNorm(ε 1e-12) → dropout; post-LN encoder layers with separate
Q/K/V projections and an additive −10000 mask on padded keys; GELU (tanh
approximation, or the exact erf form for checkpoints that use it); a tanh
pooler on the first token; an MLM head (dense + activation + LayerNorm, decoder
tied to the word embeddings, own output bias) evaluated only at the gathered
masked positions; an NSP head on the pooled output. Kernels and embeddings are
initialised from a truncated normal(0.02), biases with zeros.

Parameter paths mirror Google's checkpoint names one to one (`bert/encoder/
layer_3/attention/self/query/kernel` ↔ the same TF variable; LayerNorm
`scale`/`bias` ↔ `gamma`/`beta`; `word_embeddings/embedding` ↔
`word_embeddings`). Every parameter and activation carries logical axis names
(`vocab`, `embed`, `mlp`, `heads`, `batch`, `length`, …) that `sharding.py`
maps onto mesh axes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
from jax import lax
from jax.extend.random import threefry2x32_p
import jax.numpy as jnp
import numpy as np

from bert_jax import losses

LN_EPSILON = 1e-12
MASK_VALUE = -10000.0  # Google's additive attention mask


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Google's BertConfig fields, plus how to compute."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"  # gelu (tanh approx.), gelu_exact, relu, tanh
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  initializer: str = "truncated_normal"  # Google's | normal (transformers')
  dtype: str = "float32"  # compute dtype; params, LayerNorm, softmax: fp32
  remat: str = "none"  # none | full | dots (save matmul outputs)
  attention: str = "xla"  # xla (with prob. dropout) | dot_product | cudnn
  dropout_bits: int = 32  # 32: flax's Dropout | 16: cheaper masks (Dropout16)
  nsp: bool = True  # pooler + next-sentence head (False: MLM only)

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
          f"model.hidden_size={self.hidden_size} is not divisible by "
          f"model.num_attention_heads={self.num_attention_heads}.")
    if self.hidden_act not in _ACTIVATIONS:
      raise ValueError(f"model.hidden_act={self.hidden_act!r}: expected one "
                       f"of {sorted(_ACTIVATIONS)}.")
    if self.remat not in ("none", "full", "dots"):
      raise ValueError(f"model.remat={self.remat!r}: none, full or dots.")
    if self.dropout_bits not in (16, 32):
      raise ValueError(f"model.dropout_bits={self.dropout_bits}: 32 (flax's "
                       "Dropout) or 16 (Dropout16).")
    if self.attention not in ("xla", "dot_product", "cudnn"):
      raise ValueError(f"model.attention={self.attention!r}: xla, "
                       "dot_product or cudnn.")
    if self.initializer not in _INITIALIZERS:
      raise ValueError(f"model.initializer={self.initializer!r}: "
                       "truncated_normal or normal.")

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)


_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_exact": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


# truncated_normal(σ) draws within ±2σ (std ≈ 0.88σ), as TF-1's initializer.
_INITIALIZERS = {"truncated_normal": jax.nn.initializers.truncated_normal,
                 "normal": jax.nn.initializers.normal}


def _init(cfg: BertConfig, axes: tuple[str | None, ...]):
  make = _INITIALIZERS[cfg.initializer]
  return nn.with_logical_partitioning(make(cfg.initializer_range), axes)


def _zeros(axes):
  return nn.with_logical_partitioning(jax.nn.initializers.zeros, axes)


def _ones(axes):
  return nn.with_logical_partitioning(jax.nn.initializers.ones, axes)


def rows_dot(lhs, rhs, dimension_numbers, precision=None, **kwargs):
  """`lax.dot_general` for `nn.Dense` on the rows flattened to [M, K].

  Same products; but the kernel gradient becomes a 2-D dot contracting both
  operands' rows where they lie, while from a [B, T, K] input XLA:CPU first
  writes a transposed copy of the output gradient (fused with the dropout
  mask's recomputation: ~10% of a BERT-Tiny step)."""
  if (lhs.ndim > 2 and rhs.ndim == 2 and
      dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ()))):
    y = lax.dot_general(lhs.reshape(-1, lhs.shape[-1]), rhs,
                        (((1,), (0,)), ((), ())), precision=precision,
                        **kwargs)
    return y.reshape(*lhs.shape[:-1], rhs.shape[-1])
  return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                         **kwargs)


def _dense(cfg: BertConfig, features: int, axes: tuple[str, str],
           name: str) -> nn.Dense:
  return nn.Dense(features, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                  kernel_init=_init(cfg, axes), bias_init=_zeros(axes[1:]),
                  dot_general=rows_dot, name=name)


def _layer_norm(name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=LN_EPSILON, dtype=jnp.float32,
                      param_dtype=jnp.float32, scale_init=_ones(("embed",)),
                      bias_init=_zeros(("embed",)), name=name)


def constrain(x, axes):
  return nn.with_logical_constraint(x, axes)


class Dropout16(nn.Module):
  """Dropout whose keep decisions use 16 random bits each: one threefry2x32
  block (64 bits) decides four elements, where `nn.Dropout` spends a block
  per element (JAX's partitionable threefry). The drop probability is
  quantised to 1/65536 (0.1 → 0.1000061). Needs a threefry key and a last
  dimension divisible by 4; otherwise it draws as `nn.Dropout`. The counter is
  the element's index, so masks do not depend on the mesh."""
  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    key = self.make_rng("dropout")
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if x.shape[-1] % 4 or x.ndim < 2 or (
        typed and str(jax.random.key_impl(key)) != "threefry2x32"):
      keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
    else:
      keep = self._keep16(jax.random.key_data(key) if typed else key, x.shape)
    return jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)

  def _keep16(self, k, xshape):
    """Keep mask of shape `xshape` from raw threefry key data `k`."""
    shape = xshape[:-1] + (xshape[-1] // 4,)
    # Counter (hi, lo) = (index along the first axis, index within it).
    hi = jax.lax.broadcasted_iota(jnp.uint32, shape, 0)
    lo, stride = jnp.zeros(shape, jnp.uint32), 1
    for axis in range(len(shape) - 1, 0, -1):
      lo = lo + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(
          stride)
      stride *= shape[axis]
    b1, b2 = threefry2x32_p.bind(k[0], k[1], hi, lo)
    halves = jnp.stack([b1 >> 16, b1 & 0xFFFF, b2 >> 16, b2 & 0xFFFF], -1)
    return halves.reshape(xshape) >= np.uint32(round(self.rate * 65536))


def _dropout(cfg: BertConfig, rate: float) -> nn.Module:
  return Dropout16(rate) if cfg.dropout_bits == 16 else nn.Dropout(rate)


class Embeddings(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, input_ids, segment_ids, deterministic: bool,
               position_ids=None):
    cfg = self.cfg
    seq_len = input_ids.shape[1]
    if seq_len > cfg.max_position_embeddings:
      raise ValueError(
          f"Sequence length {seq_len} exceeds model.max_position_embeddings="
          f"{cfg.max_position_embeddings}.")
    word = nn.Embed(cfg.vocab_size, cfg.hidden_size, param_dtype=jnp.float32,
                    embedding_init=_init(cfg, ("vocab", "embed")),
                    name="word_embeddings")
    position = self.param("position_embeddings",
                          _init(cfg, ("position", "embed")),
                          (cfg.max_position_embeddings, cfg.hidden_size))
    token_type = self.param("token_type_embeddings",
                            _init(cfg, ("token_type", "embed")),
                            (cfg.type_vocab_size, cfg.hidden_size))
    pos = (position[None, :seq_len] if position_ids is None else
           jnp.take(position, position_ids, axis=0))
    x = word(input_ids) + jnp.take(token_type, segment_ids, axis=0) + pos
    x = _layer_norm("LayerNorm")(x)
    x = _dropout(cfg, cfg.hidden_dropout_prob)(x, deterministic=deterministic)
    return constrain(x.astype(cfg.compute_dtype), ("batch", "length", "embed"))


class SelfAttention(nn.Module):
  """`attention/self`: separate query/key/value projections."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask_bias, deterministic: bool):
    cfg = self.cfg
    heads = cfg.num_attention_heads
    head_dim = cfg.hidden_size // heads
    b, t, _ = x.shape

    def project(name):
      y = _dense(cfg, cfg.hidden_size, ("embed", "heads"), name)(x)
      return constrain(y.reshape(b, t, heads, head_dim),
                        ("batch", "length", "heads", "kv"))

    q, k, v = project("query"), project("key"), project("value")
    drop = cfg.attention_probs_dropout_prob
    if cfg.attention == "xla" or (drop > 0 and not deterministic):
      scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
      scores = scores / jnp.sqrt(jnp.float32(head_dim)) + mask_bias
      probs = jax.nn.softmax(scores, axis=-1)
      probs = _dropout(cfg, drop)(probs, deterministic=deterministic)
      ctx = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
    else:
      ctx = jax.nn.dot_product_attention(
          q, k, v, bias=mask_bias.astype(q.dtype),
          implementation="cudnn" if cfg.attention == "cudnn" else None)
    return ctx.reshape(b, t, cfg.hidden_size)


class DenseResidualNorm(nn.Module):
  """`…/output`: dense → dropout → LayerNorm(· + residual)."""
  cfg: BertConfig
  in_axis: str

  @nn.compact
  def __call__(self, x, residual, deterministic: bool):
    cfg = self.cfg
    y = _dense(cfg, cfg.hidden_size, (self.in_axis, "embed"), "dense")(x)
    y = _dropout(cfg, cfg.hidden_dropout_prob)(y, deterministic=deterministic)
    y = _layer_norm("LayerNorm")(y + residual).astype(cfg.compute_dtype)
    return constrain(y, ("batch", "length", "embed"))


class Attention(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask_bias, deterministic: bool):
    ctx = SelfAttention(self.cfg, name="self")(x, mask_bias, deterministic)
    return DenseResidualNorm(self.cfg, "heads", name="output")(
        ctx, x, deterministic)


class Intermediate(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    h = _dense(cfg, cfg.intermediate_size, ("embed", "mlp"), "dense")(x)
    return constrain(_ACTIVATIONS[cfg.hidden_act](h), ("batch", "length", "mlp"))


class EncoderLayer(nn.Module):
  """`encoder/layer_N`: post-LN self-attention and feed-forward blocks."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask_bias, deterministic: bool):
    x = Attention(self.cfg, name="attention")(x, mask_bias, deterministic)
    h = Intermediate(self.cfg, name="intermediate")(x)
    return DenseResidualNorm(self.cfg, "mlp", name="output")(h, x,
                                                             deterministic)


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class Encoder(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask_bias, deterministic: bool):
    cfg = self.cfg
    layer_cls = EncoderLayer
    if cfg.remat != "none":
      layer_cls = nn.remat(EncoderLayer, static_argnums=(3,),
                           policy=_REMAT_POLICIES[cfg.remat])
    for i in range(cfg.num_hidden_layers):
      x = layer_cls(cfg, name=f"layer_{i}")(x, mask_bias, deterministic)
      # Every layer's output, when applied with mutable=["intermediates"].
      self.sow("intermediates", "layer_outputs", x)
    return x


class Bert(nn.Module):
  """`bert`: returns (sequence output [B, T, H], pooled output [B, H]).

  Packed rows (`packing.py`) also pass `position_ids` and `pack_ids` [B, T]
  (which example each token belongs to, 0 on padding: attention stays within
  an example) and `cls_positions` [B, K] (each example's first token; the
  pooled output is then [B, K, H])."""
  cfg: BertConfig
  pooler: bool = True  # False: no pooler (MLM-only pretraining); pooled None

  @nn.compact
  def __call__(self, input_ids, input_mask, segment_ids,
               deterministic: bool = True, position_ids=None, pack_ids=None,
               cls_positions=None):
    cfg = self.cfg
    x = Embeddings(cfg, name="embeddings")(input_ids, segment_ids,
                                           deterministic, position_ids)
    keys = input_mask[:, None, None, :].astype(bool)
    if pack_ids is not None:  # [B, 1, T, T]: keys of the query's own example
      keys = keys & (pack_ids[:, None, :, None] == pack_ids[:, None, None, :])
    # -10000 on the keys a query may not see (padding queries: not masked).
    mask_bias = jnp.where(keys, 0.0, MASK_VALUE).astype(jnp.float32)
    x = Encoder(cfg, name="encoder")(x, mask_bias, deterministic)
    if not self.pooler:
      return x, None
    first = (x[:, 0] if cls_positions is None else
             jnp.take_along_axis(x, cls_positions[..., None], axis=1))
    pooled = Pooler(cfg, name="pooler")(first)
    return x, pooled


class Pooler(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, first):
    cfg = self.cfg
    y = _dense(cfg, cfg.hidden_size, ("embed", "embed_out"), "dense")(first)
    return jnp.tanh(y.astype(jnp.float32))


class MaskedLMHead(nn.Module):
  """`cls/predictions`: transform, then the tied decoder plus output bias."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, hidden, word_embeddings, labels=None):
    """Logits [B, P, V]; with `labels` [B, P] instead (nll, hit) [B, P] from
    `losses.decoder_nll`, without materialising biased logits or
    log-probs."""
    cfg = self.cfg
    h = _dense(cfg, cfg.hidden_size, ("embed", "embed_out"),
               "transform_dense")(hidden)
    h = _ACTIVATIONS[cfg.hidden_act](h)
    h = _layer_norm("transform_LayerNorm")(h)
    bias = self.param("output_bias", _zeros(("vocab",)), (cfg.vocab_size,))
    h = h.astype(cfg.compute_dtype)
    table = word_embeddings.astype(cfg.compute_dtype)
    if labels is not None:
      return losses.decoder_nll(h, table, bias, labels.astype(jnp.int32))
    return tied_decoder(h, table, bias)


def tied_decoder(h, table, bias):
  """MLM logits [B, P, V] = h · tableᵀ + bias, in float32 (products in the
  compute dtype: XLA:CPU has no bf16 × bf16 → f32 dot)."""
  return jnp.einsum("bph,vh->bpv", h, table).astype(jnp.float32) + bias


class NextSentenceHead(nn.Module):
  """`cls/seq_relationship`: output_weights is [2, H] as in Google's."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, pooled):
    w = self.param("output_weights", _init(self.cfg, (None, "embed")),
                   (2, self.cfg.hidden_size))
    b = self.param("output_bias", _zeros((None,)), (2,))
    return pooled @ w.T + b


class BertForPreTraining(nn.Module):
  """Encoder + MLM head on gathered positions + NSP head (`cfg.nsp`; without
  it no pooler either, as transformers' BertForMaskedLM)."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, input_ids, input_mask, segment_ids, masked_lm_positions,
               deterministic: bool = True, masked_lm_ids=None, **packed):
    """Returns (MLM logits [B, P, V], NSP logits [B, 2]), both float32; with
    `masked_lm_ids`, ((nll, hit) [B, P], NSP logits) instead, for training
    (see `losses.decoder_nll`); `losses.pretraining_losses` takes either.
    `packed`: the packed-row features `Bert` takes (NSP logits are then
    [B, K, 2]; None with `cfg.nsp=False`)."""
    bert = Bert(self.cfg, pooler=self.cfg.nsp, name="bert")
    seq, pooled = bert(input_ids, input_mask, segment_ids, deterministic,
                       **packed)
    gathered = jnp.take_along_axis(seq, masked_lm_positions[..., None], axis=1)
    table = bert.variables["params"]["embeddings"]["word_embeddings"][
        "embedding"]
    table = getattr(table, "value", table)  # unbox LogicallyPartitioned
    mlm = MaskedLMHead(self.cfg, name="cls_predictions")(gathered, table,
                                                          masked_lm_ids)
    if not self.cfg.nsp:
      return mlm, None
    nsp = NextSentenceHead(self.cfg, name="cls_seq_relationship")(pooled)
    return mlm, nsp


def google_name(flax_path: str) -> str:
  """Flax parameter path → Google TF checkpoint variable name."""
  name = flax_path.replace("LayerNorm/scale", "LayerNorm/gamma")
  name = name.replace("LayerNorm/bias", "LayerNorm/beta")
  name = name.replace("word_embeddings/embedding", "word_embeddings")
  name = name.replace("cls_predictions/transform_", "cls/predictions/transform/")
  name = name.replace("cls_predictions/", "cls/predictions/")
  return name.replace("cls_seq_relationship/", "cls/seq_relationship/")


def flat_param_names(params: Any) -> dict[str, Any]:
  """'a/b/c' → leaf, for inspection and name-based rules."""
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    flat["/".join(str(getattr(p, "key", p)) for p in path)] = leaf
  return flat
