"""Learning-rate schedule: linear warmup to the peak, then cosine decay to ``min_lr`` (the OEC recipe)."""

from __future__ import annotations

import math

from trainables.train.config import OptimConfig, default_warmup


class WarmupCosine:
    """``lr(step)`` for the optimizer step with index ``step`` (0-based).

    Warmup: ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``, so the first step already
    moves. Then cosine from ``lr`` at ``warmup_steps`` down to ``min_lr`` at ``total_steps - 1``
    (the last step trains at ``min_lr``). An instance is a plain object, so ``LambdaLR`` checkpoints it.
    """

    def __init__(self, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.lr = lr
        self.min_lr = min(min_lr, lr)
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    @classmethod
    def from_config(cls, optim: OptimConfig, total_steps: int) -> WarmupCosine:
        warmup = default_warmup(total_steps) if optim.warmup_steps is None else optim.warmup_steps
        return cls(lr=optim.lr, min_lr=optim.min_lr, warmup_steps=warmup, total_steps=total_steps)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        decay_steps = self.total_steps - 1 - self.warmup_steps
        if decay_steps <= 0:
            return self.lr
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        """Multiplier of the peak LR, the form ``torch.optim.lr_scheduler.LambdaLR`` expects."""
        return self.lr_at(step) / self.lr
