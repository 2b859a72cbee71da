"""Masks drawn at training time, on the device, from unmasked token ids.

Google's recipe fixes each example's masks in its shards (`dupe_factor`
copies). Dynamic masking (RoBERTa, MosaicBERT, Cramming, ModernBERT) draws
them afresh every time an example is seen. `draw(key, batch, spec)` does it
for a whole global batch inside the jitted step:

* the number of predictions per example follows Google's formula at
  `spec.rate`: min(max_predictions, max(1, round(real tokens × rate))),
  [CLS]/[SEP] counted as Google counts them, never predicted;
* with `spec.whole_word`, a word (a piece and the continuation pieces after
  it, `continuation[id]`) is masked whole or not at all: words are visited
  in random order and each is taken when it fits in what is left of the
  count (Google's rule: a word too long is skipped, the next one tried);
* each chosen token becomes [MASK] with probability `spec.mask`, a random id
  of the vocabulary with `spec.random`, else stays (Google's 80/10/10).

Everything is a function of the key and the batch: with the key folded from
(seed, step) the masks are a pure function of (seed, step, example) and do
not depend on the mesh or the host count (threefry keys are partitionable).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """What to predict and how to hide it."""
  max_predictions: int  # P: the width of masked_lm_* (Google's flag)
  vocab_size: int
  mask_id: int  # [MASK]
  special_ids: tuple[int, ...]  # never predicted ([CLS], [SEP], [PAD], ...)
  rate: float = 0.15  # Google's masked_lm_prob
  mask: float = 0.8  # share of chosen tokens shown as [MASK]
  random: float = 0.1  # ... as a random id; the rest stay as they were
  whole_word: bool = False

  def __post_init__(self):
    if not 0 < self.rate <= 1:
      raise ValueError(f"mask_rate={self.rate}: in (0, 1].")
    if self.mask < 0 or self.random < 0 or self.mask + self.random > 1:
      raise ValueError(f"mask={self.mask}, random={self.random}: shares of "
                       "the chosen tokens, summing to at most 1.")


def predictions_per_example(input_mask, spec: MaskSpec):
  """Google's count: min(P, max(1, round(real tokens × rate))) (round half
  to even, as Python's round)."""
  n = jnp.sum(input_mask.astype(jnp.float32), axis=-1)
  count = jnp.maximum(1, jnp.round(n * spec.rate)).astype(jnp.int32)
  return jnp.minimum(count, spec.max_predictions)


def draw(key, input_ids, input_mask, spec: MaskSpec,
         continuation=None) -> dict:
  """Masked inputs and their targets for a batch of unmasked `input_ids`
  [B, S]: `input_ids` (masked), `masked_lm_positions` / `masked_lm_ids` /
  `masked_lm_weights` [B, P] (ascending positions, zero-padded as Google's
  shards). `continuation`: bool [vocab] marking "##" pieces (whole-word
  masking; None: every token is its own word)."""
  b, s = input_ids.shape
  k_words, k_replace, k_random = jax.random.split(key, 3)
  candidate = input_mask.astype(bool) & ~jnp.isin(
      input_ids, jnp.asarray(spec.special_ids, input_ids.dtype))
  if spec.whole_word and continuation is not None:
    cont = jnp.asarray(continuation)[input_ids] & candidate
    prev = jnp.pad(candidate[:, :-1], ((0, 0), (1, 0)))
    start = candidate & ~(cont & prev)  # a "##" piece after a word joins it
  else:
    start = candidate
  word = jnp.cumsum(start, axis=1) - 1  # word number of each token
  word = jnp.where(candidate, word, s)  # out of range: no word
  rows = jnp.arange(b)[:, None]
  length = jnp.zeros((b, s + 1), jnp.int32).at[rows, word].add(1)[:, :s]
  # Words in random order; those with no tokens sort last.
  score = jnp.where(length > 0, jax.random.uniform(k_words, (b, s)), 2.0)
  order = jnp.argsort(score, axis=1)
  count = predictions_per_example(input_mask, spec)
  taken_sorted = _fill(jnp.take_along_axis(length, order, axis=1), count)
  taken = jnp.zeros((b, s + 1), bool).at[rows, order].set(taken_sorted)
  chosen = jnp.take_along_axis(taken, word, axis=1) & candidate
  # The chosen positions, ascending, into P slots.
  pos = jnp.arange(s, dtype=jnp.int32)
  key_pos = jnp.where(chosen, s - pos, 0)
  top, _ = jax.lax.top_k(key_pos, spec.max_predictions)
  weights = (top > 0).astype(jnp.float32)
  positions = jnp.where(top > 0, s - top, 0).astype(jnp.int32)
  ids = jnp.take_along_axis(input_ids, positions, axis=1)
  ids = jnp.where(top > 0, ids, 0)
  # 80/10/10 replacement of the chosen tokens.
  u = jax.random.uniform(k_replace, (b, s))
  random_ids = jax.random.randint(k_random, (b, s), 0, spec.vocab_size,
                                  dtype=input_ids.dtype)
  shown = jnp.where(u < spec.mask, jnp.asarray(spec.mask_id, input_ids.dtype),
                    jnp.where(u < spec.mask + spec.random, random_ids,
                              input_ids))
  return {"input_ids": jnp.where(chosen, shown, input_ids),
          "masked_lm_positions": positions,
          "masked_lm_ids": ids.astype(input_ids.dtype),
          "masked_lm_weights": weights}


def _fill(lengths, count):
  """Google's greedy rule over words in (shuffled) order: take a word when
  it fits in what is left of `count`, else skip it and go on. lengths [B, W]
  → taken [B, W]."""
  def step(total, length):
    take = (length > 0) & (total + length <= count)
    return total + jnp.where(take, length, 0), take
  _, taken = jax.lax.scan(step, jnp.zeros_like(count), lengths.T)
  return taken.T


def continuation_table(vocab: list[str]) -> np.ndarray:
  """bool [len(vocab)]: WordPiece "##" continuation pieces."""
  return np.array([t.startswith("##") for t in vocab], bool)
