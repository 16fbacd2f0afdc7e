"""The GPT: shapes, causality, init, weight tying, head precision, soft-capping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.losses.combine import logit_transform
from trainables.losses.config import LossConfig
from trainables.model import GPT
from trainables.presets import model_preset


def _model(**overrides: object) -> GPT:
    return GPT(model_preset("tiny", **overrides), generator=torch.Generator().manual_seed(0))


def test_forward_shapes_and_hidden_is_the_head_input() -> None:
    model = _model()
    idx = torch.randint(0, 257, (3, 17))
    hidden, logits = model(idx)
    assert hidden.shape == (3, 17, 128) and logits.shape == (3, 17, 257)
    torch.testing.assert_close(logits, hidden @ model.w_out.T)
    # hidden is the final norm's output: zero mean, unit variance per position (weight 1 at init)
    torch.testing.assert_close(hidden.mean(-1), torch.zeros(3, 17), atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden.var(-1, unbiased=False), torch.ones(3, 17), atol=1e-3, rtol=0)


def test_no_biases_anywhere() -> None:
    model = _model()
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    assert not any("bias" in name for name, _ in model.named_parameters())


def test_causal() -> None:
    model = _model()
    idx = torch.randint(0, 257, (2, 12))
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 257
    _, a = model(idx)
    _, b = model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_init_scales_and_determinism() -> None:
    model = GPT(model_preset("cpu-small"), generator=torch.Generator().manual_seed(1))
    d = model.config.n_embd
    assert model.wte.weight.std().item() == pytest.approx(1 / math.sqrt(d), rel=0.02)
    q = model.blocks[0].attn.c_attn.weight[:d]  # xavier over the q block alone: sqrt(2 / (d + d))
    assert q.std().item() == pytest.approx(math.sqrt(2 / (2 * d)), rel=0.02)
    down = model.blocks[0].mlp.c_proj.weight
    assert down.std().item() == pytest.approx(math.sqrt(2 / sum(down.shape)), rel=0.02)
    assert model.lm_head.weight.std().item() == pytest.approx(math.sqrt(2 / (d + 257)), rel=0.02)
    again = GPT(model_preset("cpu-small"), generator=torch.Generator().manual_seed(1))
    for (n, p), (_, p2) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(p, p2), n


def test_weight_tying_shares_the_tensor() -> None:
    model = _model(tie_weights=True)
    assert model.lm_head.weight is model.wte.weight
    assert model.wte.weight.std().item() == pytest.approx(1 / math.sqrt(128), rel=0.05)


def test_qk_norm_is_optional() -> None:
    model = _model(qk_norm=False)
    assert model.blocks[0].attn.q_norm is None
    _, logits = model(torch.randint(0, 257, (1, 5)))
    assert torch.isfinite(logits).all()


def test_bf16_head_keeps_low_precision_logits() -> None:
    fp32, bf16 = _model(), _model()
    bf16.precision = "bf16"
    idx = torch.randint(0, 257, (2, 9))
    _, a = fp32(idx)
    _, b = bf16(idx)
    assert a.dtype == torch.float32 and b.dtype == torch.bfloat16
    torch.testing.assert_close(b.float(), a, atol=0.1, rtol=0.05)


def test_softcap_bounds_the_logits() -> None:
    plain = _model()
    capped = GPT(
        model_preset("tiny"),
        logit_transform=logit_transform(LossConfig(softcap=0.5)),
        generator=torch.Generator().manual_seed(0),
    )
    idx = torch.randint(0, 257, (2, 9))
    _, raw = plain(idx)
    _, logits = capped(idx)
    assert logits.abs().max() < 0.5
    torch.testing.assert_close(logits, 0.5 * torch.tanh(raw / 0.5))


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="precision"):
        GPT(model_preset("tiny"), precision="fp16")  # type: ignore[arg-type]
