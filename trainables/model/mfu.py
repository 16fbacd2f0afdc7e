"""Model FLOPs and model FLOP utilisation (MFU) of a training run.

Torch-free: the service, the reports and the tests use it without loading torch.

FLOPs per trained token (forward + backward), as PaLM (Chowdhery et al. 2022, appendix B) counts
them and nanoGPT's ``estimate_mfu`` does::

    6 · N  +  12 · n_layer · n_embd · T

``N`` counts the parameters that take part in a matrix multiply: every parameter except the input
embedding table when the head is untied (an embedding lookup is a gather, no FLOPs); with a tied head
the shared matrix is the head's, so every parameter counts. The second term is attention: per layer
and token ``Q·Kᵀ`` and ``A·V`` each cost ``2·T·n_embd`` forward, times 3 for forward + backward. It is
not halved for the causal mask (PaLM's and nanoGPT's convention; kernels that skip the masked half
make the figure slightly generous). Loss terms (SimReg's similarity block, the z-loss) are not model
FLOPs and are not counted: a regulariser that costs time shows as a lower MFU, which is the point.

MFU = achieved model FLOP/s / (peak dense bf16 FLOP/s of one device x devices). Only CUDA devices
named in ``PEAK_BF16_FLOPS`` have a peak; on CPU, or on an unknown GPU, MFU is omitted (never guessed).
"""

from __future__ import annotations

import re

from trainables.model.config import ModelConfig

#: Peak dense (no 2:4 sparsity) bf16 tensor-core FLOP/s with float32 accumulation, per device, keyed
#: by a case-insensitive pattern searched in ``torch.cuda.get_device_name()``. First match wins, so
#: the specific variants come before the family. Sources: NVIDIA's data sheets, which quote the
#: sparse figure (twice the dense one) with an asterisk.
PEAK_BF16_FLOPS: tuple[tuple[str, str, float], ...] = (
    # H100 data sheet (nvidia.com/en-us/data-center/h100): SXM 1,979 / NVL 1,671 / PCIe 1,513 TFLOPS sparse.
    (r"\bH100\b.*\bNVL\b", "H100 NVL", 835.5e12),
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe", 756.5e12),
    (r"\bH100\b", "H100 SXM", 989.4e12),  # "NVIDIA H100 80GB HBM3" is the SXM5 part
    # H200 data sheet (nvidia.com/en-us/data-center/h200): SXM 1,979 / NVL 1,671 TFLOPS sparse.
    (r"\bH200\b.*\bNVL\b", "H200 NVL", 835.5e12),
    (r"\bH200\b", "H200 SXM", 989.4e12),
    # GH200 (Grace Hopper) carries an H100/H200 SXM-class GPU: 1,979 TFLOPS sparse.
    (r"\bGH200\b", "GH200", 989.4e12),
    # A100 data sheet (nvidia.com/en-us/data-center/a100): 312 TFLOPS dense, SXM and PCIe alike.
    (r"\bA100\b", "A100", 312e12),
    # L40S data sheet: BF16 362.05 TFLOPS dense (733 sparse).
    (r"\bL40S\b", "L40S", 362.05e12),
    # L4 data sheet: BF16 242 TFLOPS sparse.
    (r"\bL4\b", "L4", 121e12),
    # A10 data sheet: BF16 125 TFLOPS dense (250 sparse).
    (r"\bA10\b", "A10", 125e12),
    # NVIDIA Ada GPU architecture whitepaper, appendix: RTX 4090 BF16 with FP32 accumulate 165.2 dense.
    (r"\bRTX 4090\b", "RTX 4090", 165.2e12),
    # NVIDIA Ampere GA102 whitepaper: RTX 3090 BF16 with FP32 accumulate 71 dense.
    (r"\bRTX 3090\b", "RTX 3090", 71e12),
)


def peak_bf16_flops(device_name: str) -> tuple[str, float] | None:
    """``(table entry, peak dense bf16 FLOP/s)`` of the device called ``device_name`` (as
    ``torch.cuda.get_device_name`` spells it), or None when the table does not know it."""
    for pattern, label, peak in PEAK_BF16_FLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return label, peak
    return None


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in a matrix multiply (see the module docstring)."""
    embedding_table = 0 if cfg.tie_weights else cfg.vocab_size * cfg.n_embd
    return cfg.num_params() - embedding_table


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Model FLOPs of forward + backward per trained token at sequence length ``seq_len``."""
    return 6.0 * matmul_params(cfg) + 12.0 * cfg.n_layer * cfg.n_embd * seq_len


def mfu_metrics(
    *, flops_per_token: float, tokens_per_s: float, peak_flops_per_device: float | None, devices: int
) -> dict[str, float]:
    """``model_flops_per_s`` (all devices together) and, with a known peak, ``mfu`` (a fraction)."""
    achieved = flops_per_token * tokens_per_s
    out = {"model_flops_per_s": achieved}
    if peak_flops_per_device:
        out["mfu"] = achieved / (peak_flops_per_device * devices)
    return out


def device_peak_flops(device: object) -> tuple[str, float] | None:
    """``peak_bf16_flops`` of a ``torch.device``: None on CPU and for GPUs the table does not know."""
    import torch

    device = torch.device(device)  # type: ignore[arg-type]
    if device.type != "cuda":
        return None
    return peak_bf16_flops(torch.cuda.get_device_name(device))
