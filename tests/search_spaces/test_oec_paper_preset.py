"""The ``oec-paper`` preset (the OEC paper's study at its own scale) and ``budget.scale``."""

from __future__ import annotations

import pytest
import typer
from pydantic import ValidationError

from lossweep.cli.sweep import load_spec_arg
from search_spaces.spec.presets import OEC_LR_GRID, apply_overrides, get_preset
from search_spaces.spec.sweep_spec import CORPUS_TO_NAME
from search_spaces.spec.translate import train_config

CORPUS = "parquet:/data/fineweb-gpt2"


def test_the_paper_settings() -> None:
    spec = get_preset("oec-paper")  # the template: it leaves the corpus to the user
    assert spec.data.corpus == CORPUS_TO_NAME
    assert spec.methods == ["baseline", "z_loss", "mu_loss", "mu_centering", "softcap"]
    assert spec.lr == OEC_LR_GRID and spec.search_trials() == 5 * 7
    assert spec.confirm is not None and spec.num_trials() == 5 * 7 + 5 * len(spec.confirm.seeds)
    assert spec.coefficients == {"z_loss_weight": 1e-4, "mu_loss_weight": 1e-4, "softcap_cap": 30.0}
    assert (spec.model.preset, spec.precision) == ("oec-16m", "bf16")
    assert (spec.data.batch_size, spec.data.seq_len) == (64, 2048)
    assert spec.total_tokens() == 13_107_200_000  # 100k steps x 64 x 2048
    assert (spec.warmup_steps(), spec.budget.min_lr) == (5000, 1e-5)
    assert spec.resources.gpus_per_worker == 1
    config = train_config(apply_overrides(spec, {"data.corpus": CORPUS}), {"method": "mu_loss", "lr": 1e-2})
    assert config.use_gpu and config.precision == "bf16" and config.compile is None
    assert (config.optim.warmup_steps, config.optim.min_lr, config.steps) == (5000, 1e-5, 100_000)
    assert config.model_overrides == {"vocab_size": 50304}


def test_a_spec_to_run_must_name_the_corpus() -> None:
    spec = get_preset("oec-paper")
    with pytest.raises(ValidationError, match=r"data\.corpus: this sweep trains on a corpus you name"):
        apply_overrides(spec, {})
    with pytest.raises(typer.BadParameter, match=r"data\.corpus"):
        load_spec_arg("oec-paper", None)
    named = load_spec_arg("oec-paper", [f"data.corpus={CORPUS}", "model.preset=oec-57m"])
    assert named.data.corpus == CORPUS and named.model.preset == "oec-57m"


def test_budget_scale_shrinks_steps_warmup_and_reports_together() -> None:
    spec = apply_overrides(get_preset("oec-paper"), {"data.corpus": CORPUS, "budget.scale": 0.01})
    assert (spec.total_steps(), spec.warmup_steps(), spec.eval_interval()) == (1000, 50, 10)
    config = train_config(spec, {"method": "baseline", "lr": 3e-3})
    assert (config.steps, config.optim.warmup_steps, config.eval_interval) == (1000, 50, 10)
    tokens = apply_overrides(get_preset("demo"), {"budget.tokens": 10_240, "budget.scale": 0.5})
    assert tokens.total_steps() == 10  # 5120 tokens of 8 x 64
    for bad in (0, 1.5):
        with pytest.raises(ValidationError, match=r"budget\.scale"):
            apply_overrides(spec, {"budget.scale": bad})
    with pytest.raises(ValidationError, match=r"budget\.warmup_steps=5000 x budget\.scale=0\.5 must be smaller"):
        apply_overrides(spec, {"budget.steps": 4000, "budget.scale": 0.5})


def test_the_official_evaluation_and_data_order() -> None:
    from search_spaces.run.job import protocol
    from trainables.train.config import DEFAULT_TEST_TOKENS

    spec = apply_overrides(get_preset("oec-paper"), {"data.corpus": CORPUS})
    assert (spec.data.sampling, spec.divergence.l0) == ("random", 10.83)
    assert spec.test_tokens() == 2000 * 16 * 2048 and (spec.eval_interval(), spec.test_interval()) == (1000, 10_000)
    config = train_config(spec, {"method": "baseline", "lr": 3e-3})
    assert (config.data.sampling, config.data.test_tokens, config.test_interval) == ("random", 65_536_000, 10_000)
    assert config.divergence.l0 == 10.83 and config.data.eval_tokens == 4 * 64 * 2048
    assert protocol(spec) == {
        "sampling": "random",
        "eval_tokens": 524_288,
        "eval_interval": 1000,
        "test_tokens": 65_536_000,
        "test_interval": 10_000,
        "l0": 10.83,
    }
    # budget.scale shrinks the test evaluation with everything else, down to the precision floor
    small = apply_overrides(spec, {"budget.scale": 0.01})
    assert (small.test_tokens(), small.eval_interval(), small.test_interval()) == (655_360, 10, 100)
    assert apply_overrides(spec, {"budget.scale": 1e-4}).test_tokens() == DEFAULT_TEST_TOKENS
    odd = apply_overrides(spec, {"budget.scale": 0.0123})
    assert odd.test_interval() % odd.eval_interval() == 0 and odd.test_interval() > 0
    assert get_preset("demo").test_tokens() == DEFAULT_TEST_TOKENS and get_preset("demo").test_interval() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"divergence.l0": 0}, "divergence.l0"),
        ({"divergence.l0": -10.83}, "divergence.l0"),
        ({"divergence.l0": "median"}, "divergence.l0"),
        ({"data.sampling": "shuffled"}, "data.sampling"),
        ({"data.test_tokens": 0}, "data.test_tokens"),
        ({"data.eval_tokens": 0}, "data.eval_tokens"),
        ({"budget.test_interval": 1500}, "budget.test_interval"),
    ],
)
def test_bad_protocol_settings_name_the_field(overrides: dict, field: str) -> None:
    spec = apply_overrides(get_preset("oec-paper"), {"data.corpus": CORPUS})
    with pytest.raises(ValidationError) as info:
        apply_overrides(spec, overrides)
    err = info.value.errors()[0]
    assert ".".join(str(p) for p in err["loc"][:2]) == field or field in str(err["msg"]), info.value
