"""`train_and_evaluate(config, workdir)`: two-phase BERT pretraining.

Phases run in order (phase1: seq 128, phase2: seq 512 by default); each has
its own data, batch size, step count and warm-up/decay schedule. Between
phases the parameters always carry over. The optimizer state restarts by
default (NVIDIA's two-phase LAMB recipe: fresh moments, a new warm-up);
`phaseN.carry_optimizer_state=True` keeps moments and counters instead, with
the phase's schedule measured from its own first step.

One `train_step` is one optimizer update over the global batch; with
`optimizer.grad_accum_steps = k` it averages the gradients of k micro-batches
(`lax.scan`) before the update, which equals the large-batch gradient.
Everything that decides a step (data position, dropout key = fold_in(seed,
global step)) is a function of the step number, so a resumed run repeats an
uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from bert_jax import checkpointing
from bert_jax import evaluation
from bert_jax import flops
from bert_jax import input_pipeline
from bert_jax import losses
from bert_jax import models
from bert_jax import nonfinite
from bert_jax import optim
from bert_jax import runs
from bert_jax import sharding
from bert_jax import xla_cpu
from bert_jax.conversion import interop
from data_prep import fileio


@dataclasses.dataclass
class Phase:
  index: int
  cfg: ml_collections.ConfigDict
  start: int  # global step at which the phase begins

  @property
  def end(self) -> int:
    return self.start + self.cfg.num_steps


def phases(config) -> list[Phase]:
  out, start = [], 0
  for i, name in enumerate(("phase1", "phase2")):
    cfg = config.get(name)
    if cfg is None or cfg.num_steps <= 0:
      continue
    out.append(Phase(i, cfg, start))
    start += cfg.num_steps
  if not out:
    raise ValueError("No phase has num_steps > 0.")
  return out


def init_seed(config) -> int:
  """Parameter initialisation (all heads included) and dropout."""
  seed = config.get("init_seed", -1)
  return config.seed if seed is None or seed < 0 else seed


def data_seed(config) -> int:
  """Order of the training data: file order and the record shuffle buffer.
  (Masks and NSP pairs are static in the shards: set by data_prep's seed.)"""
  seed = config.get("data_seed", -1)
  return config.seed if seed is None or seed < 0 else seed


def _batch_spec(phase_cfg, config, model_cfg) -> input_pipeline.DataSpec:
  return input_pipeline.DataSpec(
      phase_cfg.train_files, phase_cfg.max_seq_length,
      phase_cfg.max_predictions_per_seq, phase_cfg.global_batch_size,
      model_cfg.vocab_size)


def _check(config, model_cfg: models.BertConfig, mesh) -> None:
  if config.get("on_nonfinite", "stop") not in ("stop", "skip"):
    raise ValueError(f"on_nonfinite={config.on_nonfinite!r}: stop or skip.")
  xla_cpu.check(config.get("cpu_dots", "auto"))
  target = config.get("target_mlm_accuracy", 0.0)
  if not 0.0 <= target < 1.0:
    raise ValueError(f"target_mlm_accuracy={target}: a held-out MLM "
                     "accuracy below 1, or 0 (off).")
  if target and not any(p.cfg.get("eval_files") for p in phases(config)):
    raise ValueError("target_mlm_accuracy is set but no phase has held-out "
                     "data: set phase1.eval_files (and eval_every).")
  dp = mesh.shape["data"] * mesh.shape["fsdp"]
  for p in phases(config):
    try:
      phase_schedule(p)
    except ValueError as e:  # e.g. "schedule='cosine': expected one of ..."
      raise ValueError(f"phase{p.index + 1}.{e}") from e
    b = p.cfg.global_batch_size
    accum = config.optimizer.grad_accum_steps
    if b % (dp * accum):
      raise ValueError(
          f"phase{p.index + 1}.global_batch_size={b} must be divisible by the "
          f"data-parallel size {dp} × optimizer.grad_accum_steps={accum}.")
    if p.cfg.get("eval_files") and config.eval_batch_size % dp:
      raise ValueError(
          f"eval_batch_size={config.eval_batch_size} must be divisible by the "
          f"data-parallel size {dp} (phase{p.index + 1}.eval_files is set).")
    for name, k in ((f"phase{p.index + 1}.packing", p.cfg.get("packing", 0)),
                    ("eval_packing", config.get("eval_packing", 0))):
      if not 0 <= k <= p.cfg.max_seq_length // 2:
        raise ValueError(f"{name}={k}: 0 (off) or the most examples per row "
                         "(an example has at least 2 tokens).")
    if p.cfg.max_seq_length > model_cfg.max_position_embeddings:
      raise ValueError(
          f"phase{p.index + 1}.max_seq_length={p.cfg.max_seq_length} exceeds "
          f"model.max_position_embeddings={model_cfg.max_position_embeddings}.")


def phase_schedule(phase: Phase):
  """The phase's learning rate by its own step (`phaseN.schedule`)."""
  c = phase.cfg
  return optim.schedule(c.get("schedule", "google"), c.learning_rate,
                        c.warmup_steps, c.num_steps,
                        c.get("decay_fraction", 0.2))


def make_optimizer(config, phase: Phase, offset: int) -> optax.GradientTransformation:
  schedule = phase_schedule(phase)
  lr = (lambda count: schedule(count - offset)) if offset else schedule
  o = config.optimizer
  return optim.create(o.name, lr, o.weight_decay, o.b1, o.b2, o.eps,
                      o.clip_norm)


NonFiniteError = nonfinite.NonFiniteError


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
                    skip_nonfinite: bool = False, prng: str = "threefry2x32"):
  """(state, batch) → (state, metrics); one optimizer update. Metric
  `nonfinite` is 1 when the loss or gradient norm is NaN/Inf; with
  `skip_nonfinite` such a step leaves parameters and optimizer unchanged;
  `prng`: the dropout key's implementation (`dropout_key`)."""
  key = dropout_key(seed, prng)
  def loss_fn(params, micro, rng):
    mlm, nsp = model.apply({"params": params}, micro["input_ids"],
                           micro["input_mask"], micro["segment_ids"],
                           micro["masked_lm_positions"], deterministic=False,
                           masked_lm_ids=micro["masked_lm_ids"],
                           rngs={"dropout": rng},
                           **evaluation.packed_features(micro))
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


def _init_params(model, phase_cfg, mesh, seed):
  b, s, p = 1, phase_cfg.max_seq_length, phase_cfg.max_predictions_per_seq
  ones = jnp.ones((b, s), jnp.int32)
  pos = jnp.zeros((b, p), jnp.int32)
  init = lambda rng: model.init(rng, ones, ones, ones, pos)["params"]
  return sharding.init_sharded(init, mesh, jax.random.PRNGKey(seed))


def _state_shardings(state):
  return jax.tree_util.tree_map(lambda x: x.sharding, state)


def _abstract(state):
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      state)


def resolve_paths(config: ml_collections.ConfigDict
                  ) -> ml_collections.ConfigDict:
  """A copy of `config` with its local paths absolute (`~` expanded), so the
  config saved in checkpoints works from any directory."""
  config = config.copy_and_resolve_references()
  for name in ("phase1", "phase2"):
    for field in ("train_files", "eval_files"):
      if config.get(name) is not None and config[name].get(field):
        config[name][field] = fileio.resolve_list(config[name][field])
  if config.get("init_from"):
    config.init_from = fileio.resolve(config.init_from)
  return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) all phases; returns the final metrics. Relative paths
  (workdir, data, init_from) are taken from the current directory."""
  config, workdir = resolve_paths(config), fileio.resolve(workdir)
  mesh = sharding.create_mesh(config.mesh.data, config.mesh.fsdp,
                              config.mesh.tensor,
                              dcn_data=config.mesh.get("dcn_data", 1))
  model_cfg = models.BertConfig(**config.model.to_dict())
  _check(config, model_cfg, mesh)
  model = models.BertForPreTraining(model_cfg)
  ck = config.checkpoint
  all_phases = phases(config)
  ckpt = checkpointing.Checkpointer(
      workdir, ck.save_every, ck.keep_last,
      checkpointing.keep_forever_steps(ck.keep_forever, all_phases[-1].end),
      ck.async_save)
  ckpt.install_signal_handler()
  writer = _Writer(workdir)
  latest = ckpt.latest_step()
  meta = (runs.RunMeta.from_json(ckpt.restore_meta(latest))
          if latest is not None else None)
  if meta is not None and meta.is_import:
    raise ValueError(
        f"{workdir} holds an imported checkpoint, not a training run; train "
        f"in a new workdir with --config.init_from={workdir}.")
  clock = evaluation.Clock(meta.train_time_s if meta else 0.0,
                           meta.target if meta else None)
  if clock.target and config.get("stop_at_target", False):
    logging.info("%s reached target_mlm_accuracy at step %d; nothing to do "
                 "(config.stop_at_target).", workdir, clock.target["step"])
    ckpt.close()
    return {"target": clock.target, "train_time_s": meta.train_time_s}
  params, state, result, phase_evals = None, None, {}, {}
  for phase in all_phases:
    if meta is not None and meta.phase > phase.index:
      continue
    resume_here = meta is not None and meta.phase == phase.index
    carry = phase.index > 0 and phase.cfg.get("carry_optimizer_state", False)
    tx = make_optimizer(config, phase, phase.start if carry else 0)
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
      if params is None:  # fresh start, or the shapes to restore into
        params, _ = _init_params(model, phase.cfg, mesh, init_seed(config))
        if meta is None and config.get("init_from"):
          params = init_from(config, params)
      if state is None or not carry:
        opt_state = jax.jit(tx.init)(params)
      else:
        opt_state = state["opt_state"]
      state = {"params": params, "opt_state": opt_state,
               "global_step": jnp.asarray(phase.start, jnp.int32)}
      if resume_here:
        state, _ = ckpt.restore(latest, _abstract(state))
        logging.info("Resumed from step %d (phase %d).", latest,
                     phase.index + 1)
      result = _run_phase(config, model, tx, phase, state, mesh, ckpt, writer,
                          clock,
                          meta.data_streams if resume_here else None)
      if result.get("stopped"):
        break
      if "eval" in result:
        phase_evals[f"phase{phase.index + 1}"] = result["eval"]
      state = result.pop("state")
      params = state["params"]
      if result.pop("at_target", False):
        break
    meta = None
  ckpt.wait()
  ckpt.close()
  writer.flush()
  if phase_evals:
    result["eval_by_phase"] = phase_evals
  return result


def init_from(config, params):
  """Parameters of another run or an imported checkpoint (`config.init_from`,
  step `config.init_from_step`, -1 for its latest), into `params`' shardings."""
  run = runs.open_run(config.init_from, config.get("init_from_step", -1),
                      what="config.init_from")
  theirs = run.meta.config_dict["model"]
  diff = {f: theirs[f] for f in interop.SHAPE_FIELDS
          if theirs.get(f) != config.model[f]}
  if theirs.get("hidden_act") != config.model.hidden_act:
    diff["hidden_act"] = theirs.get("hidden_act")
  if diff:
    raise ValueError(
        f"config.init_from={config.init_from} (step {run.step}) was made with "
        "a different model; set " +
        " ".join(f"--config.model.{k}={v}" for k, v in diff.items()))
  restored = run.params(_abstract(params))
  step = run.step
  logging.info("Initialised from %s, step %d.", config.init_from, step)
  return restored


def _train_batches(config, phase: Phase, spec, first: int, streams: int,
                   data_sh):
  """The phase's global training batches from phase step `first` on
  (packed when `phaseN.packing`), the same for every resume point."""
  pc, seed = phase.cfg, data_seed(config) * 1000 + phase.index
  if pc.get("packing", 0):
    ds = input_pipeline.packed_batches(
        spec, seed, pc.packing, start_step=first,
        shuffle_buffer=config.shuffle_buffer, streams=streams,
        open_rows=config.get("pack_open_rows", 32))
  else:
    ds = input_pipeline.host_dataset(spec, seed, start_step=first,
                                     shuffle_buffer=config.shuffle_buffer,
                                     streams=streams)
  return input_pipeline.global_batches(
      ds, data_sh, input_pipeline.list_files(spec.files))


def _run_phase(config, model, tx, phase, state, mesh, ckpt, writer, clock,
               saved_streams=None) -> dict:
  pc = phase.cfg
  spec = _batch_spec(pc, config, model.cfg)
  accum = config.optimizer.grad_accum_steps
  first = int(state["global_step"]) - phase.start
  streams = input_pipeline.resolve_streams(config.get("data_streams", -1),
                                           jax.process_count())
  if saved_streams not in (None, streams):
    logging.warning("The checkpoint read %d input streams, this run %d: the "
                    "data order differs from here on (fix data_streams to "
                    "keep it across host counts).", saved_streams, streams)
  data_sh = sharding.batch_sharding(mesh)
  state_sh = _state_shardings(state)
  skip = config.get("on_nonfinite", "stop") == "skip"
  opts = xla_cpu.compiler_options(config.get("cpu_dots", "auto"),
                                  model.cfg.hidden_size,
                                  mesh.devices.flat[0].platform)
  step_fn = jax.jit(make_train_step(model, tx, accum, init_seed(config), skip,
                                    config.get("dropout_prng", "threefry2x32")),
                    in_shardings=(state_sh, data_sh), compiler_options=opts,
                    out_shardings=(state_sh, None), donate_argnums=0)
  batches = _train_batches(config, phase, spec, first, streams, data_sh)
  if pc.get("eval_files"):
    evaluate = evaluation.HeldOut(
        jax.jit(evaluation.make_eval_step(model), compiler_options=opts),
        pc.eval_files, pc, config, mesh)
  held_out = lambda: clock.evaluate(lambda: evaluate(state["params"]), state)
  metrics_hist, evals = [], []
  meter = flops.Meter(pc, model.cfg, first, config.peak_tflops)
  if first == 0 and phase.index == 0 and 0 in ckpt.keep_forever and (
      ckpt.latest_step() is None):  # the initialisation (MultiBERTs step_0)
    ckpt.save(0, state, runs.RunMeta(
        kind="training", config=config.to_json(), data_streams=streams,
        records_per_stream=0).to_json(), force=True)
  watch = nonfinite.Watch(skip)
  target = config.get("target_mlm_accuracy", 0.0)
  for local in range(first, pc.num_steps):
    try:
      batch = next(batches)
    except input_pipeline.DataError:
      logging.error("Bad input at step %d; checkpoints up to step %s are "
                    "intact.", phase.start + local, ckpt.latest_step())
      raise
    if local == first:  # compile once, ahead of time, and report memory
      step_fn = step_fn.lower(state, batch).compile()
      mem = step_fn.memory_analysis()
      if mem is not None:
        logging.info("Compiled step: %.1f MB temp, %.1f MB arguments.",
                     getattr(mem, "temp_size_in_bytes", 0) / 2**20,
                     getattr(mem, "argument_size_in_bytes", 0) / 2**20)
    state, m = step_fn(state, batch)
    step = phase.start + local + 1
    ckpt.check(step)  # a failed background save stops the run here
    watch.add(step, m["nonfinite"])
    meter.add(m)
    logged = step % config.log_every == 0 or local + 1 == pc.num_steps
    stop = ckpt.should_stop(step)
    if logged or stop or ckpt.should_save(step):
      watch.check(ckpt)  # before anything non-finite can be saved
    if logged:
      m = jax.tree_util.tree_map(float, m)
      del m["sequences"], m["real_tokens"]
      m.update(learning_rate=float(phase_schedule(phase)(local)),
               **meter.read(local))
      writer.write_scalars(step, m)
      logging.info("step %d/%d (phase %d): %s", step, phase.end,
                   phase.index + 1,
                   ", ".join(f"{k}={v:.4g}" for k, v in sorted(m.items())))
      metrics_hist.append({"step": step, **m})
      meter.restart(local)
    reached = None
    if (pc.get("eval_files") and config.eval_every and
        step % config.eval_every == 0 and local + 1 < pc.num_steps):
      ev = held_out()
      writer.write_scalars(step, ev)
      logging.info("eval at step %d: %s", step, ev)
      evals.append({"step": step, **ev})
      reached = evaluation.check_target(target, step, ev, clock, writer)
    last = local + 1 == pc.num_steps or (
        reached is not None and config.get("stop_at_target", False))
    meta = runs.RunMeta(
        kind="training", config=config.to_json(), phase=phase.index,
        phase_step=local + 1, data_streams=streams,
        records_per_stream=None if pc.get("packing") else
        (local + 1) * pc.global_batch_size // streams,
        train_time_s=clock.train_s(), target=clock.target).to_json()
    if last:
      watch.check(ckpt)
    if ckpt.save(step, state, meta, force=stop or last):
      writer.flush()  # the logged history survives a kill up to this save
    if stop:
      logging.warning("Stop requested: saved step %d; exiting.", step)
      ckpt.wait()
      return {"stopped": True, "step": step}
    if reached is not None and config.get("stop_at_target", False):
      logging.info("config.stop_at_target: training ends at step %d.", step)
      return {"state": state, "train": metrics_hist, "evals": evals,
              "skipped_steps": watch.skipped, "target": reached,
              "train_time_s": clock.train_s(), "at_target": True}
  result = {"state": state, "train": metrics_hist, "evals": evals,
            "skipped_steps": watch.skipped}
  if pc.get("eval_files"):
    ev = held_out()
    writer.write_scalars(phase.end, ev)
    logging.info("eval after phase %d: %s", phase.index + 1, ev)
    result["eval"] = ev
    reached = evaluation.check_target(target, phase.end, ev, clock, writer)
    if reached is not None:
      result["target"] = reached
  result["train_time_s"] = clock.train_s()
  return result


class _Writer:
  """TensorBoard event files (process 0) via flax's writer."""

  def __init__(self, workdir):
    self._w = None
    if jax.process_index() == 0:
      from flax.metrics import tensorboard  # pylint: disable=g-import-not-at-top
      self._w = tensorboard.SummaryWriter(workdir)

  def write_scalars(self, step, scalars):
    if self._w is not None:
      for k, v in scalars.items():
        self._w.scalar(k, v, step)

  def flush(self):
    if self._w is not None:
      self._w.flush()

