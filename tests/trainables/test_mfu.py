"""Model FLOPs per token and the peak-FLOP/s table behind MFU (trainables.model.mfu)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from trainables.model.gpt import GPT
from trainables.model.mfu import (
    PEAK_BF16_FLOPS,
    device_peak_flops,
    flops_per_token,
    matmul_params,
    mfu_metrics,
    peak_bf16_flops,
)
from trainables.model.presets import model_preset


@pytest.mark.parametrize(
    ("name", "label", "tflops"),
    [  # names as torch.cuda.get_device_name() spells them
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", "H100 NVL", 835.5),
        ("NVIDIA H200", "H200 SXM", 989.4),
        ("NVIDIA H200 NVL", "H200 NVL", 835.5),
        ("NVIDIA GH200 480GB", "GH200", 989.4),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
        ("NVIDIA A100 80GB PCIe", "A100", 312.0),
        ("NVIDIA L40S", "L40S", 362.05),
        ("NVIDIA L4", "L4", 121.0),
        ("NVIDIA A10", "A10", 125.0),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2),
        ("NVIDIA GeForce RTX 3090", "RTX 3090", 71.0),
    ],
)
def test_peak_table_finds_each_device(name: str, label: str, tflops: float) -> None:
    found = peak_bf16_flops(name)
    assert found is not None and found[0] == label
    assert found[1] == pytest.approx(tflops * 1e12)


@pytest.mark.parametrize("name", ["NVIDIA GeForce GTX 1080", "Tesla V100-SXM2-16GB", "NVIDIA A40", ""])
def test_unknown_devices_have_no_peak(name: str) -> None:
    assert peak_bf16_flops(name) is None  # MFU is omitted, never guessed


def test_table_labels_are_unique_and_peaks_positive() -> None:
    labels = [label for _, label, _ in PEAK_BF16_FLOPS]
    assert len(labels) == len(set(labels))
    assert all(peak > 1e13 for _, _, peak in PEAK_BF16_FLOPS)


def test_no_peak_on_cpu() -> None:
    assert device_peak_flops(torch.device("cpu")) is None


def test_flops_per_token_by_hand() -> None:
    # oec-16m: L=6, C=224, H=768 (8/3·224 = 597.3 → 256·ceil(597/256)), 4 heads of 56, V=50304, untied head.
    cfg = model_preset("oec-16m")
    C, H, L, V, T = 224, 768, 6, 50304, 2048
    per_layer = 2 * C + 4 * C * C + 2 * 56 + 3 * C * H  # norms, q/k/v/o, qk-norms, SwiGLU
    n_matmul = L * per_layer + C + V * C  # + final norm + head; the input embedding is a lookup
    assert matmul_params(cfg) == n_matmul
    assert flops_per_token(cfg, T) == 6 * n_matmul + 12 * L * C * T
    tied = model_preset("gpt2-124m")
    assert matmul_params(tied) == tied.num_params()  # the shared matrix is the head's


def test_flops_per_token_matches_a_flop_counter() -> None:
    """Forward + backward of the real model under PyTorch's FLOP counter (attention on the math
    path, so its matmuls are counted too) against the formula; they differ by the norm weights."""
    cfg = model_preset("tiny", vocab_size=1024)
    model = GPT(cfg, generator=torch.Generator().manual_seed(0))
    B, T = 2, 64
    x = torch.randint(0, cfg.vocab_size, (B, T))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, logits = model(x)
        logits.float().sum().backward()
    expected = flops_per_token(cfg, T) * B * T
    assert counter.get_total_flops() == pytest.approx(expected, rel=5e-3)


def test_mfu_metrics_by_hand() -> None:
    out = mfu_metrics(flops_per_token=1e9, tokens_per_s=2e5, peak_flops_per_device=1e15, devices=2)
    assert out == {"model_flops_per_s": 2e14, "mfu": pytest.approx(0.1)}
    assert mfu_metrics(flops_per_token=1e9, tokens_per_s=2e5, peak_flops_per_device=None, devices=1) == {
        "model_flops_per_s": 2e14
    }

