"""Whether the model's attention runs on the flash kernel.

``CausalSelfAttention`` calls ``F.scaled_dot_product_attention(is_causal=True)`` and leaves the kernel
to PyTorch, which tries FlashAttention-2 first. On CUDA it is taken when the inputs are fp16/bf16 and
the head size is a multiple of 8 up to 256 (sm80+). Under ``precision="bf16"`` autocast casts q, k and
v to bf16 at the call (q and k leave qk-norm and the rotary embedding in float32), so every ``oec-*``
preset qualifies (head sizes 56, 80, 120, 160, 208); under ``fp32`` PyTorch falls back to the
memory-efficient kernel, which also saves O(T) per head, not the T x T matrix.
"""

from __future__ import annotations

from trainables.model.config import ModelConfig


def flash_eligible(cfg: ModelConfig, precision: str) -> bool:
    """The static part of PyTorch's flash-attention check for this model and precision."""
    return precision == "bf16" and cfg.head_dim % 8 == 0 and cfg.head_dim <= 256


def flash_kernel_runs(cfg: ModelConfig, device: object, seq_len: int = 256) -> bool:
    """Runs one causal attention of this model's head shape on ``device`` with only the flash
    backend allowed: True when it ran (a CUDA check; False on CPU or when PyTorch refuses)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = torch.device(device)  # type: ignore[arg-type]
    if device.type != "cuda":
        return False
    q = torch.randn(1, cfg.n_head, seq_len, cfg.head_dim, device=device, dtype=torch.bfloat16)
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    except RuntimeError:
        return False
    return True
