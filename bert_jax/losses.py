"""Google's pretraining losses and metrics, and the MLM decoder's loss.

`decoder_nll` is the tied MLM decoder fused with its cross-entropy (custom
VJP: the [B, P, V] logits cost as much as the encoder on CPU for small
models). `pretraining_sums` gives the sums the losses and accuracies are
ratios of, so that held-out evaluation can add them over batches, as TF's
streaming metrics do; `pretraining_losses` is one batch's ratios, the
training loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def nll_and_hit(z, labels, bias=None):
  """From logits `z` (+ `bias` [V], added inside the reductions rather than
  in a pass of its own): per-position −log softmax[label], whether the
  label's logit is the row maximum, and the log-sum-exp ([B, P] each)."""
  zb = z if bias is None else z + bias
  row_max = jnp.max(zb, axis=-1)
  lse = jnp.log(jnp.sum(jnp.exp(zb - row_max[..., None]), axis=-1)) + row_max
  picked = jnp.take_along_axis(z, labels[..., None], axis=-1)[..., 0]
  if bias is not None:
    picked = picked + bias[labels]
  return lse - picked, (picked >= row_max).astype(jnp.float32), lse


@jax.custom_vjp
def decoder_nll(h, table, bias, labels):
  """`nll_and_hit(models.tied_decoder(h, table, bias), labels)[:2]`, with a
  hand-written backward pass. The [B, P, V] logits cost as much as the
  encoder on CPU for small models, so: the bias never gets a pass of its
  own; the cotangent softmax − one-hot is one fused pass; the table's
  gradient is computed transposed (hᵀ · dz, [H, V], then a cheap transpose)
  and the bias gradient as a matrix–vector product, instead of a transposed
  copy of dz and a slow column reduction over it."""
  return _decoder_nll_fwd(h, table, bias, labels)[0]


def _decoder_nll_fwd(h, table, bias, labels):
  z = jnp.einsum("bph,vh->bpv", h, table).astype(jnp.float32)
  nll, hit, lse = nll_and_hit(z, labels, bias)
  return (nll, hit), (h, table, bias, labels, z, lse)


def _decoder_nll_bwd(res, g):
  h, table, bias, labels, z, lse = res
  vocab = jax.lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1)
  onehot = (vocab == labels[..., None]).astype(z.dtype)
  dz = (jnp.exp(z + bias - lse[..., None]) - onehot) * g[0][..., None]
  dzc = dz.astype(h.dtype)
  dh = jnp.einsum("bpv,vh->bph", dzc, table)
  dtable = jnp.einsum("bph,bpv->hv", h, dzc).T.astype(table.dtype)
  dbias = jnp.einsum("bp,bpv->v", jnp.ones(dz.shape[:-1], dz.dtype), dz)
  return dh, dtable, dbias, None


decoder_nll.defvjp(_decoder_nll_fwd, _decoder_nll_bwd)


def pretraining_sums(mlm, nsp_logits, masked_lm_ids, masked_lm_weights,
                     next_sentence_labels, nsp_weights=None) -> dict:
  """The sums Google's losses and accuracies are ratios of: over masked
  positions Σw·nll, Σw·hit, Σw (`mlm_*`); over examples Σnll, Σhit and their
  count (`nsp_*`; packed rows: weighted by `nsp_weights` [B, K]), and how
  many of them are random-next pairs (label 1). Added over
  batches they give Google's eval metrics (TF streaming means). A masked
  position counts as correct when its label's logit is the row maximum
  (Google's argmax == label, except that an exact tie also counts).
  `nsp_logits` None (MLM only): the `mlm_*` sums and `nsp_count`. `mlm`:
  logits [B, P, V], or the (nll, hit) pair the model returns when given
  `masked_lm_ids`."""
  if isinstance(mlm, tuple):
    nll, hit = mlm
  else:
    nll, hit, _ = nll_and_hit(mlm.astype(jnp.float32),
                               masked_lm_ids.astype(jnp.int32))
  w = masked_lm_weights.astype(jnp.float32)
  if nsp_logits is None:  # MLM only: the examples are still counted
    count = (jnp.float32(w.shape[0]) if nsp_weights is None else
             jnp.sum(nsp_weights.astype(jnp.float32)))
    return {"mlm_nll": jnp.sum(w * nll), "mlm_hit": jnp.sum(w * hit),
            "mlm_weight": jnp.sum(w), "nsp_count": count}
  labels = next_sentence_labels.reshape(-1)
  nsp_logits = nsp_logits.reshape(-1, 2).astype(jnp.float32)
  nsp_nll = -jnp.take_along_axis(jax.nn.log_softmax(nsp_logits, axis=-1),
                                 labels[:, None], axis=-1)[:, 0]
  nsp_hit = (jnp.argmax(nsp_logits, -1) == labels).astype(jnp.float32)
  nw = (jnp.ones_like(nsp_nll) if nsp_weights is None else
        nsp_weights.reshape(-1).astype(jnp.float32))
  return {"mlm_nll": jnp.sum(w * nll), "mlm_hit": jnp.sum(w * hit),
          "mlm_weight": jnp.sum(w), "nsp_nll": jnp.sum(nw * nsp_nll),
          "nsp_hit": jnp.sum(nw * nsp_hit), "nsp_count": jnp.sum(nw),
          "nsp_random_next": jnp.sum(nw * labels.astype(jnp.float32))}


def losses_from_sums(s: dict, maximum=jnp.maximum) -> dict:
  """Google's losses from `pretraining_sums` (of one batch or several): MLM =
  Σw·nll / (Σw + 1e-5), NSP = mean NLL over the examples, total = their sum;
  and the weighted accuracies. `maximum=max` for host floats."""
  mlm_loss = s["mlm_nll"] / (s["mlm_weight"] + 1e-5)
  mlm_accuracy = s["mlm_hit"] / (s["mlm_weight"] + 1e-5)
  if "nsp_nll" not in s:  # MLM only
    return {"loss": mlm_loss, "mlm_loss": mlm_loss,
            "mlm_accuracy": mlm_accuracy}
  examples = maximum(s["nsp_count"], 1.0)
  nsp_loss = s["nsp_nll"] / examples
  return {"loss": mlm_loss + nsp_loss, "mlm_loss": mlm_loss,
          "nsp_loss": nsp_loss,
          "mlm_accuracy": mlm_accuracy, "nsp_accuracy": s["nsp_hit"] / examples}


def pretraining_losses(mlm, nsp_logits, masked_lm_ids, masked_lm_weights,
                       next_sentence_labels, nsp_weights=None) -> dict:
  """Google's losses and accuracies of one batch (see `pretraining_sums`)."""
  return losses_from_sums(pretraining_sums(
      mlm, nsp_logits, masked_lm_ids, masked_lm_weights, next_sentence_labels,
      nsp_weights))
