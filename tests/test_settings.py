"""The training config read once: every field required, typed, checked."""

import dataclasses

import pytest

from bert_jax import settings
from configs import bert as bert_config
from configs import demo as demo_config
from configs import fast as fast_config
from configs import multiberts as multiberts_config


@pytest.mark.parametrize("make", [
    lambda: bert_config.get_config("tiny"), lambda: fast_config.get_config(),
    lambda: demo_config.get_config(), lambda: multiberts_config.get_config("3")
], ids=["bert", "fast", "demo", "multiberts"])
def test_every_recipe_reads_into_settings(make):
  c = make()
  s = settings.read(c)
  assert [p.name for p in s.phases] == [
      n for n in ("phase1", "phase2") if c[n].num_steps > 0]
  assert s.phases[0].start == 0 and s.phases[-1].end == sum(
      c[p.name].num_steps for p in s.phases)
  assert s.model.hidden_size == c.model.hidden_size
  assert s.optimizer.name == c.optimizer.name
  with pytest.raises(dataclasses.FrozenInstanceError):
    s.log_every = 1  # read once: nothing changes it afterwards


def test_seeds_resolve_and_phases_start_where_the_last_ended():
  c = bert_config.get_config("tiny")
  c.seed, c.phase1.num_steps, c.phase2.num_steps = 5, 30, 7
  s = settings.read(c)
  assert (s.init_seed, s.data_seed) == (5, 5)
  assert [(p.start, p.end) for p in s.phases] == [(0, 30), (30, 37)]
  c.init_seed, c.data_seed = 1, 2
  assert (settings.read(c).init_seed, settings.read(c).data_seed) == (1, 2)
  c.phase1.num_steps = 0
  only = settings.read(c).phases
  assert [(p.name, p.start) for p in only] == [("phase2", 0)]
  assert isinstance(settings.read(c).phases[0].learning_rate, float)


def test_missing_and_unknown_fields_are_named():
  c = bert_config.get_config("tiny")
  del c["eval_packing"]
  with pytest.raises(settings.ConfigError,
                     match=r"lacks config\.eval_packing; start from "
                     r"configs/bert\.py"):
    settings.read(c)
  c = bert_config.get_config("tiny")
  c.phase2.lerning_rate = 1.0
  with pytest.raises(settings.ConfigError,
                     match=r"unknown config\.phase2\.lerning_rate"):
    settings.read(c)
  c = bert_config.get_config("tiny")
  del c.optimizer["b2"]
  with pytest.raises(settings.ConfigError, match=r"config\.optimizer\.b2"):
    settings.read(c)


@pytest.mark.parametrize("field,value,match", [
    ("on_nonfinite", "ignore", r"on_nonfinite='ignore': stop or skip"),
    ("dropout_prng", "philox", r"dropout_prng='philox'"),
    ("target_mlm_accuracy", 0.5, r"no phase has held-out data"),
    ("eval_packing", 65, r"eval_packing=65: 0 \(off\)"),
    ("eval_every_examples", -8, r"eval_every_examples=-8: set one"),
    ("eval_mask_rate", 0.0, r"eval_mask_rate=0.0: the share"),
])
def test_bad_values_are_refused_by_name(field, value, match):
  c = bert_config.get_config("tiny")
  c[field] = value
  with pytest.raises(settings.ConfigError, match=match):
    settings.read(c)


def test_one_evaluation_interval():
  c = bert_config.get_config("tiny")
  c.eval_every, c.eval_every_examples = 4, 8
  with pytest.raises(settings.ConfigError,
                     match="eval_every=4, eval_every_examples=8: set one"):
    settings.read(c)


def test_phase_fields_are_refused_with_their_phase():
  c = bert_config.get_config("tiny")
  c.phase2.schedule = "cosine"
  with pytest.raises(settings.ConfigError, match=r"phase2\.schedule"):
    settings.read(c)
  c = bert_config.get_config("tiny")
  c.phase2.max_seq_length = 1024
  with pytest.raises(settings.ConfigError,
                     match=r"phase2\.max_seq_length=1024 exceeds "
                     r"model\.max_position_embeddings=512"):
    settings.read(c)
  c = bert_config.get_config("tiny")
  c.phase1.num_steps = c.phase2.num_steps = 0
  with pytest.raises(settings.ConfigError, match="No phase has num_steps"):
    settings.read(c)
