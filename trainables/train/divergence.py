"""When a run ends early, and what is only recorded.

A diverged trial is a result, not an error: the engine stops, reports one last row with
``diverged=1``, the step and the cause, and returns. Every rule here is fed values already reduced
across ranks (the caller's job), so all ranks reach the same decision at the same step.

The paper never stops a run: it trains to the end and caps the final loss at ``L0`` when it computes
LR sensitivity. A transient spike the schedule recovers from is data. So only these end a run:

- ``nonfinite_loss``: the training or validation loss (reduced over ranks) is NaN or infinite;
- ``nonfinite_grad``: the gradient norm (before clipping) is NaN or infinite;
- ``val_above_l0_sustained`` (opt-in, ``DivergenceConfig.sustained_evals`` = K > 0): after warmup,
  K consecutive evaluations above ``L0 + val_margin``;
- ``loss_spike`` (opt-in, ``spike_factor`` > 0): after warmup, train CE above ``spike_factor`` x its
  running minimum for ``spike_patience`` consecutive steps.

What is recorded and never stops anything: ``above_l0_step``, the step of the first evaluation after
warmup above ``L0 + val_margin`` (-1 if none). ``L0`` is ``ln V``, with ``l0="initial"`` the run's
measured initial validation loss (``set_initial_loss``), or the fixed number ``l0`` names.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from trainables.train.config import DivergenceConfig

Cause = Literal["nonfinite_loss", "nonfinite_grad", "val_above_l0_sustained", "loss_spike"]
CAUSES: tuple[Cause, ...] = ("nonfinite_loss", "nonfinite_grad", "val_above_l0_sustained", "loss_spike")


class DivergenceMonitor:
    def __init__(self, config: DivergenceConfig, *, vocab_size: int, warmup_steps: int) -> None:
        self.config = config
        self.uniform_loss = math.log(vocab_size)
        self.fixed_l0 = None if isinstance(config.l0, str) else float(config.l0)
        self.l0 = self.fixed_l0 if self.fixed_l0 is not None else self.uniform_loss
        self.warmup_steps = warmup_steps
        self.running_min = math.inf
        self.spike_count = 0
        self.above_count = 0
        self.above_l0_step = -1

    @property
    def needs_initial_loss(self) -> bool:
        return self.config.l0 == "initial"

    def set_initial_loss(self, val_loss: float) -> None:
        """``L0`` = the measured validation loss before the first step (``l0="initial"`` only)."""
        if self.needs_initial_loss and math.isfinite(val_loss):
            self.l0 = float(val_loss)

    def check_step(self, step: int, *, train_loss: float, grad_norm: float) -> Cause | None:
        """After the backward pass of optimizer step ``step`` (1-based, the step being taken)."""
        if not math.isfinite(train_loss):
            return "nonfinite_loss"
        if not math.isfinite(grad_norm):
            return "nonfinite_grad"
        if self.config.spike_factor > 0 and step > self.warmup_steps:
            if self.running_min < math.inf and train_loss > self.config.spike_factor * self.running_min:
                self.spike_count += 1
                if self.spike_count >= self.config.spike_patience:
                    return "loss_spike"
            else:
                self.spike_count = 0
        self.running_min = min(self.running_min, train_loss)
        return None

    def check_eval(self, step: int, *, val_loss: float) -> Cause | None:
        """After an evaluation at ``step``: records ``above_l0_step``; ends the run only on a non-finite
        loss or, when configured, a sustained stretch above ``L0 + val_margin``."""
        if not math.isfinite(val_loss):
            return "nonfinite_loss"
        if step > self.warmup_steps and val_loss > self.l0 + self.config.val_margin:
            if self.above_l0_step < 0:
                self.above_l0_step = step
            self.above_count += 1
            if 0 < self.config.sustained_evals <= self.above_count:
                return "val_above_l0_sustained"
        else:
            self.above_count = 0
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "running_min": self.running_min,
            "spike_count": self.spike_count,
            "above_count": self.above_count,
            "above_l0_step": self.above_l0_step,
            "l0": self.l0,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running_min = float(state["running_min"])
        self.spike_count = int(state["spike_count"])
        self.above_count = int(state.get("above_count", 0))
        self.above_l0_step = int(state.get("above_l0_step", -1))
        self.l0 = float(state.get("l0", self.fixed_l0 if self.fixed_l0 is not None else self.uniform_loss))
