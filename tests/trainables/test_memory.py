"""The per-rank GPU memory estimate used to pack trials on a GPU (trainables.model.memory)."""

from __future__ import annotations

import math

import pytest

from trainables.model.memory import (
    FRAGMENTATION,
    GIB,
    PROCESS_OVERHEAD_BYTES,
    estimate_rank_memory,
    fewest_micro_steps,
    gpus_per_worker_for,
    trials_per_gpu,
)
from trainables.model.presets import model_preset


def test_estimate_by_hand_oec_16m_bf16() -> None:
    cfg = model_preset("oec-16m")
    C, H, L, V = 224, 768, 6, 50304  # H: 256·ceil((8·224/3)/256), the official SwiGLU width
    tokens = 8 * 2048
    est = estimate_rank_memory(cfg, sequences=8, seq_len=2048, precision="bf16")
    assert est.states == 16 * cfg.num_params()
    assert est.activations == tokens * (L * (34 * C + 8 * H) + 6 * C + 2 * V)
    assert est.loss_transient == tokens * 8 * V
    raw = est.states + est.activations + est.loss_transient
    assert est.total == math.ceil(raw * FRAGMENTATION) + PROCESS_OVERHEAD_BYTES


def test_estimate_grows_with_the_batch_and_precision() -> None:
    cfg = model_preset("oec-57m")
    small = estimate_rank_memory(cfg, sequences=4, seq_len=2048)
    large = estimate_rank_memory(cfg, sequences=8, seq_len=2048)
    assert large.activations == 2 * small.activations and large.states == small.states
    fp32 = estimate_rank_memory(cfg, sequences=4, seq_len=2048, precision="fp32")
    assert fp32.activations > small.activations


def test_bad_arguments_name_the_field() -> None:
    cfg = model_preset("tiny")
    with pytest.raises(ValueError, match="precision"):
        estimate_rank_memory(cfg, sequences=1, seq_len=8, precision="fp16")
    with pytest.raises(ValueError, match="sequences"):
        estimate_rank_memory(cfg, sequences=0, seq_len=8)
    with pytest.raises(ValueError, match="count"):
        gpus_per_worker_for(0)


def test_packing() -> None:
    est = estimate_rank_memory(model_preset("oec-16m"), sequences=8, seq_len=2048)
    n = trials_per_gpu(139 * GIB, est)
    assert n * est.total <= 139 * GIB < (n + 1) * est.total
    for count in (1, 2, 3, 7, 11):
        share = gpus_per_worker_for(count)
        assert count * share <= 1.0 and share > 1.0 / count - 1e-6


def test_micro_batch_holds_one_pass_of_activations() -> None:
    cfg = model_preset("oec-16m")
    whole = estimate_rank_memory(cfg, sequences=64, seq_len=2048)
    half = estimate_rank_memory(cfg, sequences=64, seq_len=2048, micro_batch=32)
    assert half.states == whole.states  # weights, gradients and AdamW state do not shrink
    assert half.activations * 2 == whole.activations and half.loss_transient * 2 == whole.loss_transient
    assert half.activations == estimate_rank_memory(cfg, sequences=32, seq_len=2048).activations
    with pytest.raises(ValueError, match="micro_batch"):
        estimate_rank_memory(cfg, sequences=8, seq_len=8, micro_batch=0)


def test_fewest_micro_steps_is_the_first_divisor_that_fits() -> None:
    cfg = model_preset("oec-16m")
    fits = {m: estimate_rank_memory(cfg, sequences=64, seq_len=2048, micro_batch=64 // m).total for m in (1, 2, 4)}
    assert fewest_micro_steps(cfg, sequences=64, seq_len=2048, gpu_bytes=fits[1]) == 1
    assert fewest_micro_steps(cfg, sequences=64, seq_len=2048, gpu_bytes=fits[1] - 1) == 2
    assert fewest_micro_steps(cfg, sequences=64, seq_len=2048, gpu_bytes=fits[2] - 1) == 4
    assert fewest_micro_steps(cfg, sequences=64, seq_len=2048, gpu_bytes=GIB) is None  # not even one sequence
