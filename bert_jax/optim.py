"""Optimizers and schedules for BERT pretraining, built from optax transforms.

* `lamb`: LAMB as NVIDIA / MLPerf use it for BERT — bias-corrected Adam moments
  (ε 1e-6 outside the square root), decoupled weight decay, a per-tensor trust
  ratio ‖w‖ / ‖update‖ (1 where either norm is 0); weight decay and the trust
  ratio are both skipped for biases and LayerNorm parameters.
* `adamw_google`: Google's `AdamWeightDecayOptimizer` — Adam moments **without**
  bias correction, ε 1e-6, decoupled decay with the same exclusions. Faithful
  to the original; its first steps are several times larger than Adam's.
* `adamw`: standard AdamW (`torch.optim.AdamW`, `optax.adamw`): optax's
  bias-corrected `scale_by_adam`, decoupled decay `lr · wd · w`, the same
  exclusions. What Hugging Face's Trainer, MosaicBERT and Cramming use.

All clip the global gradient norm to `clip_norm` first (Google's
`clip_by_global_norm(grads, 1.0)` before the update). Schedules (`schedule`):
* `google`: linear warm-up from 0 to `peak`, otherwise `peak · (1 − step /
  total)` — so the rate at the end of warm-up is `peak · (1 − warmup /
  total)`, as in the original.
* `linear`: Hugging Face's `get_linear_schedule_with_warmup`: warm-up to
  `peak`, then linear from `peak` at the end of warm-up to 0 at `total`.
* `wsd`: warm-up, stable at `peak`, then linear decay to 0 over the last
  `decay_fraction` of the steps.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

# Google excludes a variable from weight decay when its name contains one of
# these (its `_do_use_weight_decay` regexes); `_norm/` adds ModernBERT's
# norms (`attn_norm/scale`, ...), which its recipe also leaves undecayed
# (biases and norms filtered).
NO_DECAY_PATTERNS = ("LayerNorm", "layer_norm", "bias", "_norm/")


def decay_mask(params: Any, patterns=NO_DECAY_PATTERNS) -> Any:
  """True for parameters that get weight decay (and a LAMB trust ratio)."""
  def keep(path, _):
    name = "/".join(str(getattr(p, "key", p)) for p in path)
    return not any(re.search(p, name) for p in patterns)
  return jax.tree_util.tree_map_with_path(keep, params)


def google_schedule(peak: float, warmup_steps: int,
                    total_steps: int) -> optax.Schedule:
  """Google's warm-up then linear (power 1 polynomial) decay to 0."""
  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    decayed = peak * (1.0 - jnp.minimum(step, total_steps) / total_steps)
    if warmup_steps <= 0:
      return decayed
    return jnp.where(step < warmup_steps, peak * step / warmup_steps, decayed)
  return schedule


def linear_schedule(peak: float, warmup_steps: int,
                    total_steps: int) -> optax.Schedule:
  """Hugging Face's: warm-up, then linear from `peak` to 0 at the end."""
  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = peak * step / max(1, warmup_steps)
    decay = peak * jnp.clip((total_steps - step) /
                            max(1, total_steps - warmup_steps), 0.0, 1.0)
    return jnp.where(step < warmup_steps, warm, decay)
  return schedule


def wsd_schedule(peak: float, warmup_steps: int, total_steps: int,
                 decay_fraction: float) -> optax.Schedule:
  """Warm-up, stable, decay: linear to 0 over the last `decay_fraction`."""
  if not 0.0 < decay_fraction <= 1.0:
    raise ValueError(f"decay_fraction={decay_fraction}: in (0, 1].")
  decay_steps = max(1, round(total_steps * decay_fraction))
  start = total_steps - decay_steps

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = peak * step / max(1, warmup_steps)
    decay = peak * jnp.clip((total_steps - step) / decay_steps, 0.0, 1.0)
    return jnp.where(step < warmup_steps, warm,
                     jnp.where(step < start, peak, decay))
  return schedule


SCHEDULES = ("google", "linear", "wsd")


def schedule(name: str, peak: float, warmup_steps: int, total_steps: int,
             decay_fraction: float = 0.2) -> optax.Schedule:
  """The schedule named by `phaseN.schedule` (see the module docstring)."""
  if name == "google":
    return google_schedule(peak, warmup_steps, total_steps)
  if name == "linear":
    return linear_schedule(peak, warmup_steps, total_steps)
  if name == "wsd":
    return wsd_schedule(peak, warmup_steps, total_steps, decay_fraction)
  raise ValueError(f"schedule={name!r}: expected one of {list(SCHEDULES)}.")


class _MomentsState(NamedTuple):
  count: jax.Array
  mu: Any
  nu: Any


def scale_by_adam_moments(b1: float = 0.9, b2: float = 0.999,
                          eps: float = 1e-6,
                          bias_correction: bool = True
                          ) -> optax.GradientTransformation:
  """m / (sqrt(v) + eps), with or without Adam's bias correction."""
  def init(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return _MomentsState(jnp.zeros([], jnp.int32), zeros,
                         jax.tree_util.tree_map(jnp.zeros_like, params))

  def update(grads, state, params=None):
    del params
    mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g,
                                state.mu, grads)
    nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g,
                                state.nu, grads)
    count = state.count + 1
    if bias_correction:
      c1 = 1 - b1 ** count.astype(jnp.float32)
      c2 = 1 - b2 ** count.astype(jnp.float32)
      updates = jax.tree_util.tree_map(
          lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
    else:
      updates = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps),
                                       mu, nu)
    return updates, _MomentsState(count, mu, nu)

  return optax.GradientTransformation(init, update)


def lamb(learning_rate: optax.ScalarOrSchedule, weight_decay: float = 0.01,
         b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         clip_norm: float | None = 1.0,
         mask: Callable[[Any], Any] = decay_mask) -> optax.GradientTransformation:
  """NVIDIA/MLPerf LAMB with BERT's exclusions (see module docstring)."""
  return optax.chain(
      optax.clip_by_global_norm(clip_norm) if clip_norm else optax.identity(),
      scale_by_adam_moments(b1, b2, eps, bias_correction=True),
      optax.add_decayed_weights(weight_decay, mask),
      optax.masked(optax.scale_by_trust_ratio(), mask),
      optax.scale_by_learning_rate(learning_rate))


def adamw_google(learning_rate: optax.ScalarOrSchedule,
                 weight_decay: float = 0.01, b1: float = 0.9,
                 b2: float = 0.999, eps: float = 1e-6,
                 clip_norm: float | None = 1.0,
                 mask: Callable[[Any], Any] = decay_mask
                 ) -> optax.GradientTransformation:
  """Google's AdamWeightDecayOptimizer (no bias correction)."""
  return optax.chain(
      optax.clip_by_global_norm(clip_norm) if clip_norm else optax.identity(),
      scale_by_adam_moments(b1, b2, eps, bias_correction=False),
      optax.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate))


def adamw(learning_rate: optax.ScalarOrSchedule, weight_decay: float = 0.01,
          b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
          clip_norm: float | None = 1.0,
          mask: Callable[[Any], Any] = decay_mask
          ) -> optax.GradientTransformation:
  """Standard AdamW (torch / optax semantics) with BERT's exclusions."""
  return optax.chain(
      optax.clip_by_global_norm(clip_norm) if clip_norm else optax.identity(),
      optax.scale_by_adam(b1, b2, eps),
      optax.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate))


def create(name: str, learning_rate: optax.ScalarOrSchedule,
           weight_decay: float, b1: float, b2: float, eps: float,
           clip_norm: float | None) -> optax.GradientTransformation:
  """The optimizer named by `config.optimizer.name`."""
  makers = {"lamb": lamb, "adamw_google": adamw_google, "adamw": adamw}
  if name not in makers:
    raise ValueError(f"optimizer.name={name!r}: expected one of "
                     f"{sorted(makers)}.")
  return makers[name](learning_rate, weight_decay=weight_decay, b1=b1, b2=b2,
                      eps=eps, clip_norm=clip_norm)
