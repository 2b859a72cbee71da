"""A tiny BERT config file for tests that start `bert_jax.main` themselves."""

TEMPLATE = '''
from configs import bert


def get_config():
  c = bert.get_config("tiny")
  c.model.update(hidden_size=32, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=32)
  c.phase1.update(train_files="{data}/train-*", eval_files="",
                  max_seq_length=32, max_predictions_per_seq=5,
                  global_batch_size={batch}, num_steps={steps},
                  warmup_steps=1)
  c.phase2.num_steps = 0
  c.shuffle_buffer = 50
{extra}
  return c
'''


def config_text(data: str, steps: int, batch: int = 8, *lines: str) -> str:
  """Source of a config file: the tiny model on `data`'s seq-32 shards for
  `steps` steps, then `lines` (statements on `c`)."""
  return TEMPLATE.format(data=data, steps=steps, batch=batch,
                         extra="\n".join("  " + l for l in lines))
