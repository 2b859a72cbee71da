"""The tiny BERT the tests build and train (fixtures in conftest.py).

`model()`: a `BertConfig` for model-level tests; `config(files, steps)`: a
trainer config on seq-32 shards; `config_text(...)`: the same config as the
source of a config file, for tests that start `bert_jax.main` themselves.
"""

# The trained tiny model: 2 layers of 32, seq 32 (conftest's `tiny_shards`).
MODEL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=32)
PHASE1 = dict(max_seq_length=32, max_predictions_per_seq=5, warmup_steps=1)
SHUFFLE_BUFFER = 50


def model(vocab_size: int = 97, hidden_size: int = 32,
          num_hidden_layers: int = 2, num_attention_heads: int = 2,
          max_position_embeddings: int = 32, **over):
  """A small `BertConfig`: feed-forward 2×hidden, dropout off unless set."""
  from bert_jax import models  # pylint: disable=g-import-not-at-top
  fields = dict(vocab_size=vocab_size, hidden_size=hidden_size,
                num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads,
                intermediate_size=2 * hidden_size,
                max_position_embeddings=max_position_embeddings,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  return models.BertConfig(**{**fields, **over})


def config(files: str, steps: int, batch: int = 8):
  """configs/bert.py:tiny shrunk to `MODEL`, phase 1 only: `steps` steps of
  `batch` on the seq-32 shards `files` (globs, comma-separated)."""
  from configs import bert  # pylint: disable=g-import-not-at-top
  c = bert.get_config("tiny")
  c.model.update(MODEL)
  c.phase1.update(train_files=files, eval_files="", global_batch_size=batch,
                  num_steps=steps, **PHASE1)
  c.phase2.num_steps = 0
  c.shuffle_buffer = SHUFFLE_BUFFER
  return c


TEMPLATE = '''
from configs import bert


def get_config():
  c = bert.get_config("tiny")
  c.model.update({model})
  c.phase1.update(train_files="{data}/train-*", eval_files="",
                  global_batch_size={batch}, num_steps={steps}, **{phase1})
  c.phase2.num_steps = 0
  c.shuffle_buffer = {shuffle}
{extra}
  return c
'''


def config_text(data: str, steps: int, batch: int = 8, *lines: str) -> str:
  """Source of a config file equal to `config(f"{data}/train-*", steps,
  batch)`, then
  `lines` (statements on `c`)."""
  return TEMPLATE.format(data=data, steps=steps, batch=batch, model=MODEL,
                         phase1=PHASE1, shuffle=SHUFFLE_BUFFER,
                         extra="\n".join("  " + l for l in lines))
