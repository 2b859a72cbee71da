"""The training step: one optimizer update over the global batch.

`make_train_step` builds the function `train.py` jits (and the benchmarks
and accelerator checks time): forward and backward over the batch, or over
`optimizer.grad_accum_steps` micro-batches averaged (`lax.scan`), masks drawn
in the step for `phaseN.masking=dynamic`, the optimizer update, and the
non-finite guard. Everything random in it is keyed by the global step, so a
resumed run repeats an uninterrupted one. It needs neither TensorFlow nor
the config library, so it runs wherever JAX, Flax and optax do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from bert_jax import dynamic_masking
from bert_jax import losses


def packed_features(batch) -> dict:
  """The packed-row features of a batch (none for unpacked batches)."""
  return {k: batch[k] for k in ("position_ids", "pack_ids", "cls_positions")
          if k in batch}


def dropout_key(seed: int, prng: str = "threefry2x32"):
  """The dropout key of step 0. threefry2x32 (JAX's default) gives the same
  masks on any mesh; `rbg`/`unsafe_rbg` (XLA's RngBitGenerator) are much
  cheaper on CPU and GPU but their masks may change with the sharding."""
  if prng == "threefry2x32":
    return jax.random.PRNGKey(seed)
  if prng not in ("rbg", "unsafe_rbg"):
    raise ValueError(f"config.dropout_prng={prng!r}: expected threefry2x32, "
                     "rbg or unsafe_rbg.")
  return jax.random.key(seed, impl=prng)


def make_train_step(model, tx, accum: int, seed: int,
                    skip_nonfinite: bool = False, prng: str = "threefry2x32",
                    masks=None):
  """(state, batch) → (state, metrics); one optimizer update. Metric
  `nonfinite` is 1 when the loss or gradient norm is NaN/Inf; with
  `skip_nonfinite` such a step leaves parameters and optimizer unchanged;
  `prng`: the dropout key's implementation (`dropout_key`). `masks`:
  (data seed, MaskSpec, continuation table) to draw the batch's masks afresh
  (dynamic masking, keyed by the global step), or None (the batch's own)."""
  key = dropout_key(seed, prng)
  if masks is not None:
    mask_seed, mask_spec, continuation = masks
    mask_key = dynamic_masking.step_key(mask_seed)
  def loss_fn(params, micro, rng):
    mlm, nsp = model.apply({"params": params}, micro["input_ids"],
                           micro["input_mask"], micro["segment_ids"],
                           micro["masked_lm_positions"], deterministic=False,
                           masked_lm_ids=micro["masked_lm_ids"],
                           rngs={"dropout": rng},
                           **packed_features(micro))
    m = losses.pretraining_losses(mlm, nsp, micro["masked_lm_ids"],
                                  micro["masked_lm_weights"],
                                  micro["next_sentence_labels"],
                                  micro.get("nsp_weights"))
    # Examples and real tokens in the (micro-)batch; summed over micro-batches.
    m["sequences"] = (jnp.sum(micro["nsp_weights"]) if "nsp_weights" in micro
                      else jnp.float32(micro["input_ids"].shape[0]))
    m["real_tokens"] = jnp.sum(micro["input_mask"].astype(jnp.float32))
    return m["loss"], m

  def train_step(state, batch):
    rng = jax.random.fold_in(key, state["global_step"])
    if masks is not None:  # over the whole batch, before any micro-batching
      batch = dynamic_masking.apply(
          jax.random.fold_in(mask_key, state["global_step"]), batch,
          mask_spec, continuation)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if accum == 1:
      (_, metrics), grads = grad_fn(state["params"], batch, rng)
    else:
      micro = jax.tree_util.tree_map(
          lambda x: x.reshape((accum, x.shape[0] // accum) + x.shape[1:]),
          batch)

      def body(carry, xs):
        mb, k = xs
        (_, m), g = grad_fn(state["params"], mb, jax.random.fold_in(rng, k))
        return jax.tree_util.tree_map(jnp.add, carry, (g, m)), None

      zeros = jax.tree_util.tree_map(
          jnp.zeros_like, (state["params"], jax.eval_shape(
              lambda: grad_fn(state["params"], jax.tree_util.tree_map(
                  lambda x: x[0], micro), rng)[0][1])))
      (grads, metrics), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
      grads = jax.tree_util.tree_map(lambda g: g / accum, grads)
      metrics = {k: v if k in ("sequences", "real_tokens") else v / accum
                 for k, v in metrics.items()}
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
    metrics["nonfinite"] = (~finite).astype(jnp.int32)
    if skip_nonfinite:
      keep = lambda new, old: jnp.where(finite, new, old)
      params = jax.tree_util.tree_map(keep, params, state["params"])
      opt_state = jax.tree_util.tree_map(keep, opt_state, state["opt_state"])
    new = {"params": params, "opt_state": opt_state,
           "global_step": state["global_step"] + 1}
    return new, metrics

  return train_step
