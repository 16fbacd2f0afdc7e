"""When a run counts as diverged.

A diverged trial is a result, not an error: the engine stops, reports one last row with
``diverged=1``, the step and the cause, and returns. Every rule here is fed values already reduced
across ranks (the caller's job), so all ranks reach the same decision at the same step.

Causes:

- ``nonfinite_loss``: the training loss (mean over ranks) is NaN or infinite;
- ``nonfinite_grad``: the gradient norm (before clipping) is NaN or infinite;
- ``val_above_uniform``: after warmup, validation CE exceeds ``ln V + val_margin`` — worse than
  predicting the uniform distribution;
- ``loss_spike``: after warmup, train CE stays above ``spike_factor`` x its running minimum for
  ``spike_patience`` consecutive steps (off when ``spike_factor`` is 0).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from trainables.config import DivergenceConfig

Cause = Literal["nonfinite_loss", "nonfinite_grad", "val_above_uniform", "loss_spike"]
CAUSES: tuple[Cause, ...] = ("nonfinite_loss", "nonfinite_grad", "val_above_uniform", "loss_spike")


class DivergenceMonitor:
    def __init__(self, config: DivergenceConfig, *, vocab_size: int, warmup_steps: int) -> None:
        self.config = config
        self.uniform_loss = math.log(vocab_size)
        self.warmup_steps = warmup_steps
        self.running_min = math.inf
        self.spike_count = 0

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
        if not math.isfinite(val_loss):
            return "nonfinite_loss"
        if step > self.warmup_steps and val_loss > self.uniform_loss + self.config.val_margin:
            return "val_above_uniform"
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"running_min": self.running_min, "spike_count": self.spike_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running_min = float(state["running_min"])
        self.spike_count = int(state["spike_count"])
