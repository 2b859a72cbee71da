"""Non-finite loss or gradients during training (`config.on_nonfinite`)."""

from __future__ import annotations

from absl import logging
import jax


class NonFiniteError(FloatingPointError):
  """The loss or the gradients became NaN/Inf."""


class Watch:
  """Collects each step's non-finite flag without a device sync; `check`
  (at log and save points) stops the run, or counts the skipped steps."""

  def __init__(self, skip: bool):
    self.skip, self.pending, self.skipped = skip, [], []

  def add(self, step: int, flag) -> None:
    self.pending.append((step, flag))

  def check(self, ckpt) -> None:
    if not self.pending:
      return
    flags = jax.device_get([f for _, f in self.pending])
    bad = [s for (s, _), f in zip(self.pending, flags) if int(f)]
    self.pending = []
    if bad and self.skip:
      self.skipped += bad
      logging.warning("Skipped non-finite steps %s (on_nonfinite=skip).", bad)
    elif bad:
      raise NonFiniteError(
          f"Loss or gradients became NaN/Inf at step {bad[0]}; stopped "
          f"without saving it. The last good checkpoint is step "
          f"{ckpt.latest_step()}. Lower the learning rate, check the data, "
          "or set --config.on_nonfinite=skip to skip such steps.")
