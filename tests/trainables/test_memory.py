"""The per-rank GPU memory estimate used to pack trials on a GPU (trainables.model.memory)."""

from __future__ import annotations

import math

import pytest

from trainables.model.memory import (
    FRAGMENTATION,
    GIB,
    PROCESS_OVERHEAD_BYTES,
    estimate_rank_memory,
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
