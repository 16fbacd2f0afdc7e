"""Weight tying (``model.overrides.tie_weights``, ``--tie-weights``): one tensor for the input embedding
and the LM head; μ-loss and μ-centering act on it; a checkpoint round-trips it; a term that needs an
LM head of its own is refused on a tied model, naming the field."""

from __future__ import annotations

import dataclasses
import io
from types import MappingProxyType
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from lossweep.cli.main import app
from trainables.data.tokens import Dataset, load_dataset
from trainables.losses import registry
from trainables.losses.config import LossConfig
from trainables.train.config import DataConfig, OptimConfig, TrainConfig
from trainables.train.engine import TrainingRun


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    cache = str(tmp_path_factory.mktemp("cache"))
    return DataConfig(seq_len=32, batch_size=4, eval_tokens=32, test_tokens=64, cache_dir=cache)


@pytest.fixture(scope="module")
def dataset(data_cfg: DataConfig) -> Dataset:
    return load_dataset(data_cfg)


def _config(data: DataConfig, method: str, tied: bool = True, **coefficients: float) -> TrainConfig:
    return TrainConfig(
        model="tiny",
        model_overrides={"tie_weights": tied},
        data=data,
        optim=OptimConfig(lr=1e-2, warmup_steps=0),
        loss=LossConfig.from_method(method, coefficients),
        steps=4,
        eval_interval=2,
    )


def test_tied_model_has_one_tensor(data_cfg: DataConfig, dataset: Dataset) -> None:
    tied = TrainingRun(_config(data_cfg, "baseline"), dataset=dataset).module
    untied = TrainingRun(_config(data_cfg, "baseline", tied=False), dataset=dataset).module
    assert tied.w_out is tied.wte.weight
    assert untied.w_out is not untied.wte.weight  # the default is untied, as the paper's main runs
    V, C = tied.w_out.shape
    assert untied.num_params() - tied.num_params() == V * C


def test_mu_centering_centres_the_shared_tensor(data_cfg: DataConfig, dataset: Dataset) -> None:
    run = TrainingRun(_config(data_cfg, "mu_centering"), dataset=dataset)
    run.train_step()
    embedding = run.module.wte.weight.detach()
    assert embedding.mean(dim=0).abs().max() < 1e-6  # the input embedding is the centred head
    assert run.module.w_out is run.module.wte.weight


def test_mu_loss_gradient_reaches_the_shared_tensor(data_cfg: DataConfig, dataset: Dataset) -> None:
    weight = 0.5

    def grad(method: str, **coefficients: float) -> tuple[torch.Tensor, torch.Tensor]:
        run = TrainingRun(_config(data_cfg, method, **coefficients), dataset=dataset)
        x, y = run.sampler.batch(0)
        run._forward_backward(x, y)
        w = run.module.w_out
        assert w.grad is not None
        return w.grad.double(), w.detach().double()

    base, w = grad("baseline")
    with_mu, _ = grad("mu_loss", mu_loss_weight=weight)
    # the obvious reference: d/dW of weight * ||mean_i W_i||^2 is 2 * weight * mean / V in every row
    V = w.shape[0]
    expected = (2 * weight / V) * w.mean(dim=0, keepdim=True).expand_as(w)
    torch.testing.assert_close(with_mu - base, expected, rtol=1e-4, atol=1e-7)


def test_checkpoint_round_trips_a_tied_model(data_cfg: DataConfig, dataset: Dataset) -> None:
    cfg = _config(data_cfg, "mu_loss+mu_centering")
    straight = TrainingRun(cfg, dataset=dataset)
    straight.run(lambda _: None)

    first = TrainingRun(cfg, dataset=dataset)
    first.train_step()
    first.train_step()
    first.report()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = TrainingRun(cfg, dataset=dataset)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.module.w_out is resumed.module.wte.weight  # still one tensor after loading
    resumed.run(lambda _: None)
    for name, tensor in straight.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name


@pytest.fixture
def head_needing_term(monkeypatch: pytest.MonkeyPatch) -> str:
    """The registry with μ-loss declared as needing an LM head of its own (no built-in term does)."""
    needy = dataclasses.replace(registry.TERMS["mu_loss"], separate_head=True)
    monkeypatch.setattr(registry, "TERMS", MappingProxyType({**registry.TERMS, "mu_loss": needy}))
    return "mu_loss"


def test_term_needing_its_own_head_is_refused_on_a_tied_model(
    data_cfg: DataConfig, dataset: Dataset, head_needing_term: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from search_spaces.spec.sweep_spec import SweepSpec

    with pytest.raises(ValueError, match=r"^model_overrides.tie_weights: loss term 'mu_loss' needs a separate"):
        TrainingRun(_config(data_cfg, head_needing_term), dataset=dataset)
    TrainingRun(_config(data_cfg, head_needing_term, tied=False), dataset=dataset)  # untied: fine

    doc = {"budget": {"steps": 10}, "methods": ["baseline", head_needing_term]}
    with pytest.raises(ValidationError, match=r"model\.overrides\.tie_weights: method 'mu_loss'"):
        SweepSpec.model_validate({**doc, "model": {"preset": "tiny", "overrides": {"tie_weights": True}}})
    SweepSpec.model_validate(doc)

    monkeypatch.setenv("LOSSWEEP_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["train-local", "--tie-weights", "--loss", "mu_loss"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --tie-weights: loss term 'mu_loss'"), result.output
