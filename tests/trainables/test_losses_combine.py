"""total_loss: CE + Σ weight·term with one shared logsumexp, and its metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainables.losses import LossConfig, cross_entropy, mu_loss, simreg_loss, total_loss, z_loss
from trainables.losses.combine import after_step_, logit_transform


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, T, H, V = 2, 8, 6, 5
    hidden = torch.randn(B, T, H, generator=g)
    w_out = torch.randn(V, H, generator=g) + 0.2
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[1, 6:] = -100
    return {"hidden": hidden, "w_out": w_out, "logits": hidden @ w_out.T, "labels": labels}


def test_baseline_is_plain_cross_entropy() -> None:
    x = _inputs()
    total, metrics = total_loss(LossConfig(), **x)
    ce = cross_entropy(x["logits"], x["labels"])
    assert total.item() == ce.item()
    assert set(metrics) == {"train_loss", "total_loss", "log_z_mean", "log_z_sq_mean"}
    assert metrics["train_loss"].item() == metrics["total_loss"].item() == ce.item()
    assert metrics["log_z_sq_mean"].item() == pytest.approx(z_loss(x["logits"], x["labels"]).item(), rel=1e-6)


def test_every_term_weighted_and_reported_unweighted() -> None:
    x = _inputs(1)
    cfg = LossConfig.from_cli(["z_loss=0.01", "mu_loss=0.5", "simreg=0.2,temperature=0.3,causal=true"])
    total, metrics = total_loss(cfg, **x)
    ce = cross_entropy(x["logits"], x["labels"]).item()
    z = z_loss(x["logits"], x["labels"]).item()
    mu = mu_loss(x["w_out"]).item()
    sr = simreg_loss(x["hidden"], x["labels"], 0.3, causal=True).item()
    assert total.item() == pytest.approx(ce + 0.01 * z + 0.5 * mu + 0.2 * sr, rel=1e-6)
    assert metrics["term_z_loss"].item() == pytest.approx(z, rel=1e-6)
    assert metrics["term_mu_loss"].item() == pytest.approx(mu, rel=1e-6)
    assert metrics["term_simreg"].item() == pytest.approx(sr, rel=1e-6)
    assert metrics["train_loss"].item() == pytest.approx(ce, rel=1e-6)
    assert metrics["total_loss"].item() == pytest.approx(total.item(), rel=1e-7)
    assert all(not v.requires_grad and v.dim() == 0 for v in metrics.values())


def test_fused_gradient_equals_separate_passes() -> None:
    x = _inputs(2)
    logits = x["logits"].clone().requires_grad_()
    total, _ = total_loss(LossConfig.from_cli(["z_loss=0.1"]), logits=logits, labels=x["labels"])
    total.backward()
    ref = x["logits"].double().requires_grad_()
    flat, y = ref.flatten(0, 1), x["labels"].flatten()
    valid = y != -100
    lse = torch.logsumexp(flat, -1)[valid]
    (F.cross_entropy(flat, y) + 0.1 * lse.square().mean()).backward()
    torch.testing.assert_close(logits.grad.double(), ref.grad, rtol=1e-5, atol=1e-8)


def test_missing_inputs_are_named() -> None:
    x = _inputs(3)
    with pytest.raises(ValueError, match="hidden"):
        total_loss(LossConfig.from_method("simreg", {}), logits=x["logits"], labels=x["labels"])
    with pytest.raises(ValueError, match="w_out"):
        total_loss(LossConfig.from_method("mu_loss", {}), logits=x["logits"], labels=x["labels"])


def test_after_step_hook_centres_only_when_enabled() -> None:
    model = torch.nn.Linear(4, 9, bias=False)
    model.w_out = model.weight  # the engine hands the model, which exposes w_out
    with torch.no_grad():
        model.weight.add_(1.0)
    before = model.weight.detach().clone()
    after_step_(LossConfig(), model)
    assert torch.equal(model.weight, before)
    after_step_(LossConfig.from_method("mu_centering", {}), model)
    assert model.weight.mean(dim=0).abs().max().item() < 1e-6


def test_logit_transform_is_the_configured_soft_cap() -> None:
    assert logit_transform(LossConfig.from_method("z_loss+mu_centering", {})) is None
    transform = logit_transform(LossConfig.from_method("softcap", {"softcap_cap": 2.0}))
    assert transform is not None
    x = torch.linspace(-10, 10, 7)
    torch.testing.assert_close(transform(x), 2.0 * torch.tanh(x / 2.0))


def test_public_functions_survive_their_submodules_being_imported() -> None:
    import importlib

    import trainables.losses as losses

    for name in ("cross_entropy", "z_loss", "mu_loss", "softcap"):
        module = importlib.import_module(f"trainables.losses.{name}")
        assert getattr(losses, name) is getattr(module, name)  # the function, not the same-named module
        assert callable(getattr(losses, name))
    from trainables.losses import softcap

    assert softcap(torch.tensor([60.0]), 30.0).item() == pytest.approx(30 * torch.tanh(torch.tensor(2.0)).item())
