"""Masks drawn at training time, on the device, from unmasked token ids.

Google's recipe fixes each example's masks in its shards (`dupe_factor`
copies). Dynamic masking (RoBERTa, MosaicBERT, Cramming, ModernBERT) draws
them afresh every time an example is seen. `draw(key, batch, spec)` does it
for a whole global batch inside the jitted step:

* the number of predictions per example follows Google's formula at
  `spec.rate`: min(max_predictions, max(1, round(real tokens × rate))),
  [CLS]/[SEP] counted as Google counts them, never predicted;
* with `spec.whole_word`, a word (a piece and the continuation pieces after
  it, `continuation[id]`: WordPiece's "##", SentencePiece pieces without a
  word-start "▁") is masked whole or not at all: words are visited
  in random order and each is taken when it fits in what is left of the
  count (Google's rule: a word too long is skipped, the next one tried);
* each chosen token becomes [MASK] with probability `spec.mask`, a random id
  of the vocabulary with `spec.random`, else stays (Google's 80/10/10).

Everything is a function of the key and the batch: with the key folded from
(seed, step) the masks are a pure function of (seed, step, example) and do
not depend on the mesh or the host count (threefry keys are partitionable).

The trainer (`phaseN.masking=dynamic`) calls `apply`, which first restores
the original ids of Google-format masked shards (`restore`; shards written
with `data_prep --masking=none` have nothing to restore), then draws. The
vocabulary facts it needs ([MASK], [CLS], [SEP], the continuation pieces)
come from the data's vocab file (`load_vocab`). Held-out shards without
masks get Google's masks from a fixed seed instead (`host_masker`), so every
run evaluates on the same predictions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from data_prep import masking as static_masking
from data_prep import tokenization

# Folded into the data seed for the masks' keys, so that they differ from the
# dropout keys even when both seeds are the shared `config.seed`.
_MASK_STREAM = 0x6D61736B
EVAL_MASK_SEED = 20190524  # held-out shards without masks: fixed for all runs


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
    # A "##" piece joins the word of the candidate before it, even across a
    # [SEP] (Google's rule); the first candidate always starts a word.
    after_one = (jnp.cumsum(candidate, axis=1) - candidate) > 0
    start = candidate & ~(cont & after_one)
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


@dataclasses.dataclass(frozen=True)
class Vocab:
  """The vocabulary facts masking needs, from the data's vocab file."""
  source: str
  size: int
  mask_id: int
  cls_id: int
  sep_id: int
  continuation: np.ndarray  # bool [size]: the piece continues a word
  random_ids: np.ndarray  # Google's replacement draws (the word list)


def load_vocab(path: str, kind: str = "auto", do_lower_case: bool = True,
               sha256: str | None = None, where: str = "") -> Vocab:
  """`path` (vocab.txt or a SentencePiece .model) as a `Vocab`; with
  `sha256` (metadata.json's), refuses a different file than the data's."""
  try:
    tok = tokenization.load_tokenizer(path, do_lower_case, kind)
  except tokenization.VocabError as e:
    raise ValueError(f"{where}{e} Dynamic masking needs the data's vocab: "
                     "set --config.vocab_file=... where it has moved.") from e
  if sha256 and tok.fingerprint != sha256:
    raise ValueError(f"{where}{path} is not the vocab the data was written "
                     "with (its sha256 differs from metadata.json's).")
  return Vocab(path, tok.vocab_size, tok.mask_id, tok.cls_id, tok.sep_id,
               np.asarray(tok.continuation, bool),
               np.asarray(tok.random_ids, np.int64))


def phase_spec(phase, vocab: Vocab) -> MaskSpec:
  """The `MaskSpec` of a `settings.Phase` (`mask_rate`, `mask_token_prob`,
  `random_token_prob`, `whole_word_masking`)."""
  return MaskSpec(max_predictions=phase.max_predictions_per_seq,
                  vocab_size=vocab.size, mask_id=vocab.mask_id,
                  special_ids=(0, vocab.cls_id, vocab.sep_id),
                  rate=phase.mask_rate, mask=phase.mask_token_prob,
                  random=phase.random_token_prob,
                  whole_word=phase.whole_word_masking)


def step_key(data_seed: int):
  """The masks' key before folding in the global step."""
  return jax.random.fold_in(jax.random.PRNGKey(data_seed), _MASK_STREAM)


def restore(batch: dict):
  """The original `input_ids` of a masked batch: each predicted position
  gets its target back (a no-op where `masked_lm_weights` are zero)."""
  ids, pos = batch["input_ids"], batch["masked_lm_positions"]
  rows = jnp.arange(ids.shape[0])[:, None]
  current = jnp.take_along_axis(ids, pos, axis=1)
  target = jnp.where(batch["masked_lm_weights"] > 0,
                     batch["masked_lm_ids"].astype(ids.dtype), current)
  return ids.at[rows, pos].set(target)


def apply(key, batch: dict, spec: MaskSpec, continuation=None) -> dict:
  """`batch` with fresh masks drawn by `key` in place of its own."""
  drawn = draw(key, restore(batch), batch["input_mask"], spec, continuation)
  return {**batch, **drawn}


def host_masker(max_predictions: int, rate: float, vocab: Vocab,
                whole_word: bool = False, seed: int = EVAL_MASK_SEED):
  """For held-out shards without masks: examples → examples with Google's
  static masks (data_prep's masker, 80/10/10) at `rate` (`config.
  eval_mask_rate`), drawn from a fixed seed, so every run and recipe
  evaluates the same predictions."""
  spec = static_masking.MaskingSpec(
      max_predictions_per_seq=max_predictions, masked_lm_prob=rate,
      cls_id=vocab.cls_id, sep_id=vocab.sep_id, mask_id=vocab.mask_id,
      random_ids=vocab.random_ids,
      continuation=vocab.continuation if whole_word else None)

  def mask(examples: dict, stream: int = 0) -> dict:
    rng = np.random.default_rng([seed, stream])
    lengths = examples["input_mask"].sum(axis=1)
    m = static_masking.mask_batch(restored_np(examples), lengths, spec, rng)
    return {**examples, "input_ids": m.input_ids,
            "masked_lm_positions": m.positions, "masked_lm_ids": m.label_ids,
            "masked_lm_weights": m.weights}
  return mask


def restored_np(examples: dict) -> np.ndarray:
  """`restore` in NumPy, for host-side examples."""
  ids = np.array(examples["input_ids"], copy=True)
  rows = np.arange(len(ids))[:, None]
  w = examples["masked_lm_weights"] > 0
  pos = examples["masked_lm_positions"]
  ids[rows.repeat(pos.shape[1], 1)[w], pos[w]] = examples["masked_lm_ids"][w]
  return ids
