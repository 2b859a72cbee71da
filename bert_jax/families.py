"""The encoder families a run or checkpoint can hold: BERT (`models.py`) and
ModernBERT (`modernbert.py`).

A model config records its family as `model.family` ("bert" when absent:
every record written before there were two); `config_from_dict` and
`to_dict` go between the record and the config dataclass, and
`pretraining_model` gives the module the trainer, evaluation and exports
use (both take `models.BertForPreTraining`'s arguments).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Union

from bert_jax import models
from bert_jax import modernbert

CONFIGS = {"bert": models.BertConfig,
           "modernbert": modernbert.ModernBertConfig}
ModelConfig = Union[models.BertConfig, modernbert.ModernBertConfig]


def family(cfg: ModelConfig) -> str:
  return ("modernbert" if isinstance(cfg, modernbert.ModernBertConfig)
          else "bert")


def config_from_dict(d: Mapping[str, Any]) -> ModelConfig:
  """A recorded `model` section → its config dataclass."""
  fields = dict(d)
  name = fields.pop("family", "bert")
  if name not in CONFIGS:
    raise ValueError(f"model.family={name!r}: one of {sorted(CONFIGS)}.")
  if "layer_types" in fields:
    fields["layer_types"] = tuple(fields["layer_types"])
  return CONFIGS[name](**fields)


def to_dict(cfg: ModelConfig) -> dict[str, Any]:
  """The config as a JSON-ready record, with its family."""
  d = dataclasses.asdict(cfg)
  if "layer_types" in d:
    d["layer_types"] = list(d["layer_types"])
  return {"family": family(cfg), **d}


def structure_fields(cfg: ModelConfig) -> tuple[str, ...]:
  """The fields that make two configs' parameters interchangeable (shapes,
  activation, layer pattern): `config.init_from` must agree on them."""
  if isinstance(cfg, modernbert.ModernBertConfig):
    return ("family", "vocab_size", "hidden_size", "intermediate_size",
            "num_hidden_layers", "num_attention_heads", "hidden_activation",
            "layer_types", "norm_bias", "attention_bias", "mlp_bias",
            "classifier_bias", "classifier_activation", "decoder_bias",
            "tie_word_embeddings")
  from bert_jax.conversion import interop  # pylint: disable=g-import-not-at-top
  return ("family", *interop.SHAPE_FIELDS, "hidden_act")


def pretraining_model(cfg: ModelConfig):
  """BERT: `BertForPreTraining` (MLM and, with `nsp`, NSP heads);
  ModernBERT: `ModernBertForMaskedLM`."""
  if isinstance(cfg, modernbert.ModernBertConfig):
    return modernbert.ModernBertForMaskedLM(cfg)
  return models.BertForPreTraining(cfg)
