"""The optimizer of a run: AdamW, with the fused CUDA kernel where it applies.

The fused implementation updates every parameter in one kernel launch instead of one (foreach) or
several (for-loop) per tensor; at the OEC sizes a step has ~100 small tensors, so launch overhead is a
real share of the step on a GPU. It computes the same update (fp32 parameters and state). On CPU the
default implementation is kept, so CPU runs stay exactly what they were.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainables.train.config import OptimConfig


def adamw_implementation(device_type: str) -> dict[str, Any]:
    """Extra ``torch.optim.AdamW`` keyword arguments for parameters on ``device_type``:
    ``{"fused": True}`` on CUDA, nothing (PyTorch's default) elsewhere."""
    return {"fused": True} if device_type == "cuda" else {}


def build_adamw(module: nn.Module, config: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over ``module``'s parameters: weight decay on matrices only (norm weights are exempt)."""
    decay = [p for p in module.parameters() if p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        **adamw_implementation(device.type),
    )
