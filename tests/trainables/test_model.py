"""The GPT: shapes, causality, init, weight tying, head precision, soft-capping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.losses.combine import logit_transform
from trainables.losses.config import LossConfig
from trainables.model.config import ModelConfig
from trainables.model.gpt import GPT
from trainables.model.presets import model_preset


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


def _official_stds(cfg: ModelConfig) -> dict[str, float]:
    """Each tensor's initial std as the official code's formulas give it (nanoGPT/model.py):
    Xavier sqrt(2 / (fan_in + fan_out)) on each Linear as it stands, N(0, 0.02/sqrt(2 L)) on the
    attention output projection, N(0, 1/sqrt(C)) on the embedding."""
    C, V, h, L = cfg.n_embd, cfg.vocab_size, cfg.hidden_dim, cfg.n_layer
    return {
        "qkv": math.sqrt(2 / (C + 3 * C)),  # ONE stacked [3C, C] Linear
        "attn_out": 0.02 / math.sqrt(2 * L),
        "gate": math.sqrt(2 / (C + h)),  # separate Linears W and V in the official SwiGLU
        "up": math.sqrt(2 / (C + h)),
        "down": math.sqrt(2 / (h + C)),
        "embedding": 1 / math.sqrt(C),
        "head": math.sqrt(2 / (C + V)),
    }


def _measured_stds(model: GPT) -> dict[str, float]:
    block = model.blocks[0]
    h = model.config.hidden_dim
    return {
        "qkv": block.attn.c_attn.weight.std().item(),
        "attn_out": block.attn.c_proj.weight.std().item(),
        "gate": block.mlp.c_fc.weight[:h].std().item(),
        "up": block.mlp.c_fc.weight[h:].std().item(),
        "down": block.mlp.c_proj.weight.std().item(),
        "embedding": model.wte.weight.std().item(),
        "head": model.lm_head.weight.std().item(),
    }


def test_oec_init_matches_the_official_formulas() -> None:
    cfg = model_preset("cpu-small", vocab_size=4096)
    assert cfg.init == "oec"
    model = GPT(cfg, generator=torch.Generator().manual_seed(1))
    want = _official_stds(cfg)
    got = _measured_stds(model)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=0.03), name
    # every block, not just the first: the scaled projection is per layer
    for block in model.blocks:
        assert block.attn.c_proj.weight.std().item() == pytest.approx(want["attn_out"], rel=0.03)
    for norm in (model.ln_f, model.blocks[0].ln_1, model.blocks[0].attn.q_norm):
        assert norm is not None and torch.equal(norm.weight, torch.ones_like(norm.weight))
    again = GPT(cfg, generator=torch.Generator().manual_seed(1))
    for (n, p), (_, p2) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(p, p2), n


def test_oec_init_with_tying_ends_xavier_as_the_head() -> None:
    cfg = model_preset("cpu-small", vocab_size=4096, tie_weights=True)
    model = GPT(cfg, generator=torch.Generator().manual_seed(2))
    assert model.lm_head.weight is model.wte.weight
    assert model.wte.weight.std().item() == pytest.approx(_official_stds(cfg)["head"], rel=0.03)


def test_legacy_init_keeps_the_earlier_scales() -> None:
    cfg = model_preset("cpu-small", init="legacy")
    model = GPT(cfg, generator=torch.Generator().manual_seed(1))
    d = cfg.n_embd
    q = model.blocks[0].attn.c_attn.weight[:d]  # Xavier over the q block alone: sqrt(2 / (d + d))
    assert q.std().item() == pytest.approx(math.sqrt(2 / (2 * d)), rel=0.03)
    out = model.blocks[0].attn.c_proj.weight
    assert out.std().item() == pytest.approx(math.sqrt(2 / (2 * d)), rel=0.03)
    tied = GPT(model_preset("tiny", init="legacy", tie_weights=True), generator=torch.Generator().manual_seed(1))
    assert tied.wte.weight.std().item() == pytest.approx(1 / math.sqrt(128), rel=0.05)


def test_swiglu_width_is_the_official_rounding() -> None:
    # 256 * ceil(int(2 * 4C / 3) / 256), as the official SwiGLU._get_hidden_dim
    for C, want in ((224, 768), (320, 1024), (480, 1280), (640, 1792), (832, 2304), (256, 768), (128, 512)):
        assert ModelConfig(n_layer=1, n_embd=C, n_head=4).hidden_dim == want, C
        assert 256 * ((int(2 * 4 * C / 3) + 255) // 256) == want
    assert ModelConfig(n_layer=1, n_embd=256, n_head=4, mlp_hidden=704).hidden_dim == 704


def test_qk_norm_is_optional() -> None:
    model = _model(qk_norm=False)
    assert model.blocks[0].attn.q_norm is None
    _, logits = model(torch.randint(0, 257, (1, 5)))
    assert torch.isfinite(logits).all()


def _precision_model(precision: str, head_precision: str | None = None, softcap: float | None = None) -> GPT:
    return GPT(
        model_preset("tiny"),
        precision=precision,  # type: ignore[arg-type]
        head_precision=head_precision,  # type: ignore[arg-type]
        logit_transform=logit_transform(LossConfig(softcap=softcap)) if softcap is not None else None,
        generator=torch.Generator().manual_seed(0),
    )


def test_bf16_head_keeps_low_precision_logits() -> None:
    fp32, bf16 = _precision_model("fp32"), _precision_model("bf16")
    assert bf16.head_precision == "bf16"  # the head follows the body unless told otherwise
    idx = torch.randint(0, 257, (2, 9))
    _, a = fp32(idx)
    _, b = bf16(idx)
    assert a.dtype == torch.float32 and b.dtype == torch.bfloat16
    torch.testing.assert_close(b.float(), a, atol=0.1, rtol=0.05)


def test_bf16_body_with_fp32_head() -> None:
    model = _precision_model("bf16", head_precision="fp32")
    idx = torch.randint(0, 257, (2, 9))
    hidden, logits = model(idx)
    assert logits.dtype == torch.float32
    # the head is a float32 matmul of the (bf16-computed) final hidden state: no bf16 rounding of logits
    torch.testing.assert_close(logits, hidden.float() @ model.w_out.float().T)
    _, bf16_logits = _precision_model("bf16")(idx)
    assert not torch.equal(logits, bf16_logits.float())


def test_softcap_runs_in_fp32_whatever_the_head_precision() -> None:
    idx = torch.randint(0, 257, (2, 9))
    _, raw = _precision_model("bf16")(idx)  # bf16 logits
    _, capped = _precision_model("bf16", softcap=0.5)(idx)
    assert raw.dtype == torch.bfloat16 and capped.dtype == torch.float32
    torch.testing.assert_close(capped, 0.5 * torch.tanh(raw.float() / 0.5), rtol=0, atol=1e-6)


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
    with pytest.raises(ValueError, match="head_precision"):
        GPT(model_preset("tiny"), head_precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init"):
        model_preset("tiny", init="kaiming")
