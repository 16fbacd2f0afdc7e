"""Host-to-device copies of a batch.

On CUDA a batch is copied from page-locked (pinned) host memory with ``non_blocking=True``: the copy
is queued on the stream and the host goes on to queue the forward pass instead of waiting for it
(a copy from ordinary pageable memory is synchronous). The pinned buffer comes from PyTorch's caching
host allocator, which keeps it until the copy has finished. Elsewhere ``.to`` is a no-op or a plain copy.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; asynchronous from pinned memory when ``device`` is a CUDA device."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
