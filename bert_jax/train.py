"""`train_and_evaluate(config, workdir)`: two-phase BERT pretraining.

Phases run in order (phase1: seq 128, phase2: seq 512 by default); each has
its own data, batch size, step count and warm-up/decay schedule. Between
phases the parameters always carry over. The optimizer state restarts by
default (NVIDIA's two-phase LAMB recipe: fresh moments, a new warm-up);
`phaseN.carry_optimizer_state=True` keeps moments and counters instead, with
the phase's schedule measured from its own first step.

One step (`train_step.py`) is one optimizer update over the global batch;
with `optimizer.grad_accum_steps = k` it averages the gradients of k
micro-batches (`lax.scan`) before the update, which equals the large-batch
gradient.
Everything that decides a step (data position, dropout key = fold_in(seed,
global step), and with `phaseN.masking=dynamic` the masks, drawn in the step
from a key folded the same way from `data_seed`) is a function of the step
number, so a resumed run repeats an uninterrupted one exactly.
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
from bert_jax import dynamic_masking
from bert_jax import evaluation
from bert_jax import families
from bert_jax import flops
from bert_jax import history
from bert_jax import input_pipeline
from bert_jax import nonfinite
from bert_jax import optim
from bert_jax import preflight
from bert_jax import runs
from bert_jax import settings
from bert_jax import sharding
from bert_jax import summary
from bert_jax import train_step
from bert_jax import xla_cpu
from data_prep import fileio


def _batch_spec(phase: settings.Phase, model_cfg) -> input_pipeline.DataSpec:
  return input_pipeline.DataSpec(
      phase.train_files, phase.max_seq_length, phase.max_predictions_per_seq,
      phase.global_batch_size, model_cfg.vocab_size)


def make_optimizer(opt: settings.Optimizer, phase: settings.Phase,
                   offset: int) -> optax.GradientTransformation:
  schedule = phase.learning_rate_schedule()
  lr = (lambda count: schedule(count - offset)) if offset else schedule
  return optim.create(opt.name, lr, opt.weight_decay, opt.b1, opt.b2, opt.eps,
                      opt.clip_norm)


NonFiniteError = nonfinite.NonFiniteError


def _init_params(model, phase, mesh, seed):
  b, s, p = 1, phase.max_seq_length, phase.max_predictions_per_seq
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) all phases; returns the final metrics (`stopped` when
  a stop was requested and saved). Relative paths (workdir, data,
  init_from) are taken from the current directory."""
  s, workdir = settings.read(config), fileio.resolve(workdir)
  data = preflight.check(s, workdir)  # every phase's files, before step 1
  vocab = preflight.masking_vocab(s, data)  # for masks drawn in training
  mesh = sharding.create_mesh(s.mesh.data, s.mesh.fsdp, s.mesh.tensor,
                              dcn_data=s.mesh.dcn_data)
  settings.check_mesh(s, mesh)
  ck = s.checkpoint
  ckpt = checkpointing.Checkpointer(
      workdir, ck.save_every, ck.keep_last,
      checkpointing.keep_forever_steps(ck.keep_forever, s.phases[-1].end),
      ck.async_save)
  latest = ckpt.latest_step()
  meta = (runs.RunMeta.from_json(ckpt.restore_meta(latest))
          if latest is not None else None)
  if meta is not None and meta.is_import:
    raise ValueError(
        f"{workdir} holds an imported checkpoint, not a training run; train "
        f"in a new workdir with --config.init_from={workdir}.")
  if meta is not None:
    for field, (old, new) in settings.resume_changes(
        meta.config_dict, s, meta.phase, meta.phase_step).items():
      logging.info("Resuming with %s changed: %r -> %r.", field, old, new)
  try:
    with ckpt.stop_on_signals():
      result = _train(s, mesh, ckpt, latest, meta, data, workdir, vocab)
  except BaseException:
    ckpt.abandon()  # a save in flight completes before the error surfaces
    raise
  if not result.get("stopped"):
    summary.end(result, workdir, ckpt.latest_step())
  ckpt.close()
  return result


def _train(s: settings.Settings, mesh, ckpt, latest, meta, data, workdir,
           vocab=None) -> dict:
  """The phases from the checkpoint `latest` (with record `meta`) or from
  the start; `vocab`: `preflight.masking_vocab`'s."""
  model = families.pretraining_model(s.model)
  writer = _Writer(workdir)
  clock = evaluation.Clock(meta.train_time_s if meta else 0.0,
                           meta.target if meta else None)
  seen = evaluation.Examples(_examples_before(s, meta))
  log = history.History(workdir, latest, clock.target,
                        write=jax.process_index() == 0)
  if clock.target and s.stop_at_target:
    logging.info("%s reached target_mlm_accuracy at step %d; nothing to do "
                 "(config.stop_at_target).", workdir, clock.target["step"])
    return {"target": clock.target, "train_time_s": meta.train_time_s}
  params, state, result, phase_evals = None, None, {}, {}
  for phase in s.phases:
    if meta is not None and meta.phase > phase.index:
      continue
    resume_here = meta is not None and meta.phase == phase.index
    carry = phase.index > 0 and phase.carry_optimizer_state
    tx = make_optimizer(s.optimizer, phase, phase.start if carry else 0)
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
      if params is None:  # fresh start, or the shapes to restore into
        params, _ = _init_params(model, phase, mesh, s.init_seed)
        summary.start(s, data, params)
        if meta is None and s.init_from:
          params = init_from(s, params)
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
      result = _run_phase(s, model, tx, phase, state, mesh, ckpt, writer,
                          clock, meta.data_streams if resume_here else None,
                          vocab, data, seen, log)
      if result.get("stopped"):
        break
      if "eval" in result:
        phase_evals[phase.name] = result["eval"]
      state = result.pop("state")
      params = state["params"]
      if result.pop("at_target", False):
        break
    meta = None
  ckpt.wait()
  writer.flush()
  if phase_evals:
    result["eval_by_phase"] = phase_evals
  return result


def _examples_before(s: settings.Settings, meta) -> int:
  """Training examples seen up to the checkpoint `meta` records; for
  records written before they were counted, rebuilt from the steps."""
  if meta is None:
    return 0
  if meta.examples is not None:
    return meta.examples
  done = [(p.num_steps if p.index < meta.phase else meta.phase_step, p)
          for p in s.phases if p.index <= meta.phase]
  if any(p.packing for _, p in done):
    logging.warning("The checkpoint does not record the examples seen and "
                    "packed rows hold several: counting rows before it.")
  return sum(n * p.global_batch_size for n, p in done)


def init_from(s: settings.Settings, params):
  """Parameters of another run or an imported checkpoint (`config.init_from`,
  step `config.init_from_step`, -1 for its latest), into `params`' shardings."""
  run = runs.open_run(s.init_from, s.init_from_step, what="config.init_from")
  theirs, ours = families.to_dict(run.model_config), families.to_dict(s.model)
  diff = {f: theirs.get(f) for f in families.structure_fields(s.model)
          if theirs.get(f) != ours.get(f)}
  if diff:
    raise ValueError(
        f"config.init_from={s.init_from} (step {run.step}) was made with "
        "a different model; set " +
        " ".join(f"--config.model.{k}={v}" for k, v in diff.items()))
  restored = run.params(_abstract(params))
  logging.info("Initialised from %s, step %d.", s.init_from, run.step)
  return restored


def _train_batches(s: settings.Settings, phase: settings.Phase, spec,
                   first: int, streams: int, data_sh):
  """The phase's global training batches from phase step `first` on
  (packed when `phaseN.packing`), the same for every resume point."""
  seed = s.data_seed * 1000 + phase.index
  if phase.packing:
    ds = input_pipeline.packed_batches(
        spec, seed, phase.packing, start_step=first,
        shuffle_buffer=s.shuffle_buffer, streams=streams,
        open_rows=s.pack_open_rows)
  else:
    ds = input_pipeline.host_dataset(spec, seed, start_step=first,
                                     shuffle_buffer=s.shuffle_buffer,
                                     streams=streams)
  return input_pipeline.global_batches(
      ds, data_sh, input_pipeline.list_files(spec.files))


def _run_phase(s: settings.Settings, model, tx, phase: settings.Phase, state,
               mesh, ckpt, writer, clock, saved_streams, vocab, data,
               seen: evaluation.Examples, log: history.History) -> dict:
  """One phase from `state` on; `seen` counts its examples, `log` takes its
  evaluations."""
  if phase.global_rope_theta:  # ModernBERT: the phase's θ (no parameter)
    model = families.pretraining_model(dataclasses.replace(
        model.cfg, global_rope_theta=phase.global_rope_theta))
  spec = _batch_spec(phase, model.cfg)
  first = int(state["global_step"]) - phase.start
  streams = input_pipeline.resolve_streams(s.data_streams,
                                           jax.process_count())
  if saved_streams not in (None, streams):
    logging.warning("The checkpoint read %d input streams, this run %d: the "
                    "data order differs from here on (fix data_streams to "
                    "keep it across host counts).", saved_streams, streams)
  data_sh = sharding.batch_sharding(mesh)
  state_sh = _state_shardings(state)
  skip = s.on_nonfinite == "skip"
  opts = xla_cpu.compiler_options(s.cpu_dots, model.cfg.hidden_size,
                                  mesh.devices.flat[0].platform)
  masks = ((s.data_seed, dynamic_masking.phase_spec(phase, vocab),
            vocab.continuation) if phase.dynamic else None)
  step_fn = jax.jit(
      train_step.make_train_step(model, tx, s.optimizer.grad_accum_steps,
                                 s.init_seed, skip, s.dropout_prng, masks),
      in_shardings=(state_sh, data_sh), compiler_options=opts,
      out_shardings=(state_sh, None), donate_argnums=0)
  batches = _train_batches(s, phase, spec, first, streams, data_sh)
  if phase.eval_files:
    held = (data or {}).get(f"{phase.name}.eval_files")
    preds = held.max_predictions if held else phase.max_predictions_per_seq
    evaluate = evaluation.HeldOut(
        jax.jit(evaluation.make_eval_step(model), compiler_options=opts),
        phase.eval_files, phase, s, mesh,
        None if held is None or held.masked else dynamic_masking.host_masker(
            preds, s.eval_mask_rate, vocab, phase.whole_word_masking), preds)

  def held_out(step):
    """Evaluates `state` after `step`: (evaluation record, target record
    if this is the first evaluation at the target)."""
    ev = clock.evaluate(lambda: evaluate(state["params"]), state)
    entry = {"step": step, "phase": phase.name, "examples": seen.read(), **ev}
    writer.write_scalars(step, {**ev, "examples_seen": entry["examples"]})
    log.add(entry)
    reached = evaluation.check_target(s.target_mlm_accuracy, entry, clock,
                                      writer)
    if reached is not None:
      log.reached(reached)
    return entry, reached

  per_step = 0 if phase.packing else phase.global_batch_size
  every = s.eval_every_examples
  due_at = (seen.read() // every + 1) * every if every else None
  schedule = phase.learning_rate_schedule()
  metrics_hist, evals = [], []
  meter = flops.Meter(phase, model.cfg, first, s.peak_tflops)
  if first == 0 and phase.index == 0 and 0 in ckpt.keep_forever and (
      ckpt.latest_step() is None):  # the initialisation (MultiBERTs step_0)
    ckpt.save(0, state, runs.RunMeta(
        kind="training", config=s.config_json, data_streams=streams,
        records_per_stream=0).to_json(), force=True)
  watch = nonfinite.Watch(skip)
  for local in range(first, phase.num_steps):
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
    seen.add(per_step, m)
    step = phase.start + local + 1
    ckpt.check(step)  # a failed background save stops the run here
    watch.add(step, m["nonfinite"])
    meter.add(m)
    logged = step % s.log_every == 0 or local + 1 == phase.num_steps
    stop = ckpt.should_stop(step)
    if logged or stop or ckpt.should_save(step):
      watch.check(ckpt)  # before anything non-finite can be saved
    if logged:
      m = jax.tree_util.tree_map(float, m)
      del m["sequences"], m["real_tokens"]
      m.update(learning_rate=float(schedule(local)), **meter.read(local))
      writer.write_scalars(step, m)
      logging.info("step %d/%d (phase %d): %s", step, phase.end,
                   phase.index + 1,
                   ", ".join(f"{k}={v:.4g}" for k, v in sorted(m.items())))
      metrics_hist.append({"step": step, **m})
      meter.restart(local)
    reached, due = None, False
    if s.eval_every:
      due = step % s.eval_every == 0
    elif every and seen.read() >= due_at:  # packed: waits for this step
      due, due_at = True, (seen.read() // every + 1) * every
    if phase.eval_files and due and local + 1 < phase.num_steps:
      entry, reached = held_out(step)
      logging.info("eval at step %d: %s", step, entry)
      evals.append(entry)
    at_target = reached is not None and s.stop_at_target
    last = local + 1 == phase.num_steps or at_target
    if last:
      watch.check(ckpt)
    if (stop or last or ckpt.should_save(step)) and ckpt.save(
        step, state, runs.RunMeta(
            kind="training", config=s.config_json, phase=phase.index,
            phase_step=local + 1, data_streams=streams,
            records_per_stream=None if phase.packing else
            (local + 1) * phase.global_batch_size // streams,
            train_time_s=clock.train_s(), target=clock.target,
            examples=seen.read()).to_json(), force=stop or last):
      writer.flush()  # the logged history survives a kill up to this save
    if stop:
      logging.warning("Stop requested: saved step %d; exiting.", step)
      ckpt.wait()
      return {"stopped": True, "step": step}
    if at_target:
      logging.info("config.stop_at_target: training ends at step %d.", step)
      return {"state": state, "train": metrics_hist, "evals": evals,
              "skipped_steps": watch.skipped, "target": reached,
              "train_time_s": clock.train_s(), "at_target": True}
  result = {"state": state, "train": metrics_hist, "evals": evals,
            "skipped_steps": watch.skipped}
  if phase.eval_files:
    ev, reached = held_out(phase.end)
    logging.info("eval after phase %d: %s", phase.index + 1, ev)
    result["eval"] = ev
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

