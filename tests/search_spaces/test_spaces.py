"""Search spaces: grid expansion, random draws, the conditional define-by-run space, trial configs."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from search_spaces.spec.spaces import define_by_run, explicit_trials, grid_trials, random_trials
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.translate import train_config, trial_params

BASE: dict[str, Any] = {"name": "t", "budget": {"steps": 20, "eval_interval": 5}}


def _spec(**doc: Any) -> SweepSpec:
    return SweepSpec.model_validate({**BASE, **doc})


def test_grid_expands_each_method_over_its_own_axes_and_seeds() -> None:
    spec = _spec(methods=["baseline", "z_loss", "mu_centering"], lr=[1e-3, 1e-2],
                 coefficients={"z_loss_weight": [1e-4, 1e-1], "simreg_weight": [0.1, 0.2]}, seeds=[0, 1])  # fmt: skip
    trials = grid_trials(spec)
    assert len(trials) == spec.num_trials() == (2 + 4 + 2) * 2
    assert {tuple(sorted(t)) for t in trials if t["method"] == "baseline"} == {("lr", "method", "seed")}
    z = [t for t in trials if t["method"] == "z_loss"]
    assert {(t["lr"], t["z_loss_weight"], t["seed"]) for t in z} == {
        (lr, w, s) for lr in (1e-3, 1e-2) for w in (1e-4, 1e-1) for s in (0, 1)
    }
    assert all("simreg_weight" not in t for t in trials)  # no method here uses it
    assert trials[0]["seed"] == 0 and trials[1]["seed"] == 1 and trials[0]["lr"] == trials[1]["lr"]


def test_random_trials_are_seeded_and_within_bounds() -> None:
    spec = _spec(methods=["simreg", "baseline"], search={"algorithm": "random", "num_samples": 20, "seed": 3},
                 lr={"distribution": "loguniform", "low": 1e-4, "high": 1e-1},
                 coefficients={"simreg_weight": {"distribution": "uniform", "low": 0.1, "high": 0.5},
                               "simreg_temperature": [0.1, 0.3]}, seeds=[0, 1])  # fmt: skip
    trials = random_trials(spec)
    assert trials == explicit_trials(spec) and len(trials) == 40
    assert all(1e-4 <= t["lr"] <= 1e-1 for t in trials)
    sim = [t for t in trials if t["method"] == "simreg"]
    assert sim and all(0.1 <= t["simreg_weight"] <= 0.5 and t["simreg_temperature"] in (0.1, 0.3) for t in sim)
    assert all("simreg_weight" not in t for t in trials if t["method"] == "baseline")
    assert [t["seed"] for t in trials[:4]] == [0, 1, 0, 1]


def test_define_by_run_is_conditional_on_the_method_and_gives_each_method_the_same_budget() -> None:
    spec = _spec(methods=["baseline", "z_loss", "simreg"], search={"algorithm": "tpe", "num_samples": 30},
                 lr={"distribution": "loguniform", "low": 1e-4, "high": 1e-1},
                 coefficients={"z_loss_weight": {"distribution": "loguniform", "low": 1e-6, "high": 1e-2},
                               "simreg_weight": [0.01, 0.1], "simreg_temperature": 0.2}, seeds=[5, 6])  # fmt: skip
    space = define_by_run(spec)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, list[int]] = {}
    for _ in range(30):
        trial = study.ask()
        constants = space(trial)
        method = constants["method"]
        seen.setdefault(method, []).append(constants["seed"])
        expected = {"lr"} | {"baseline": set(), "z_loss": {"z_loss_weight"}, "simreg": {"simreg_weight"}}[method]
        assert set(trial.params) == expected
        if method == "simreg":
            assert constants["simreg_temperature"] == 0.2
        study.tell(trial, 1.0)
    # The methods take the trials in turn, each on the same seeds: equal budgets, paired seeds.
    assert {m: len(s) for m, s in seen.items()} == {"baseline": 10, "z_loss": 10, "simreg": 10}
    assert seen["baseline"] == seen["z_loss"] == seen["simreg"] == [5, 6] * 5


def test_single_method_space_has_it_as_a_constant() -> None:
    spec = _spec(methods=["simreg"], search={"algorithm": "tpe"}, lr=[1e-3, 1e-2])
    trial = optuna.create_study().ask()
    constants = define_by_run(spec)(trial)
    assert constants["method"] == "simreg" and set(trial.params) == {"lr"}


def test_translate_to_a_train_config() -> None:
    spec = _spec(methods=["simreg+mu_centering"], model={"preset": "tiny", "overrides": {"n_layer": 1}},
                 data={"corpus": "stdlib", "seq_len": 32, "batch_size": 4}, precision="bf16")  # fmt: skip
    params = {"method": "simreg+mu_centering", "lr": 3e-3, "simreg_weight": 0.5, "seed": 4}
    cfg = train_config(spec, params)
    assert cfg.optim.lr == 3e-3 and cfg.seed == 4 and cfg.steps == 20 and cfg.eval_interval == 5
    assert cfg.loss.method == "simreg+mu_centering" and cfg.loss.mu_centering
    simreg = cfg.loss.term("simreg")
    assert simreg is not None and simreg.weight == 0.5
    assert math.isclose(simreg.params["temperature"], 0.1)  # the default
    assert cfg.model_overrides == {"n_layer": 1} and cfg.precision == "bf16" and cfg.data.seq_len == 32
    assert trial_params({"params": params}) == params
    assert trial_params({**params, "unrelated": 1}) == params


def test_tpe_has_no_explicit_list() -> None:
    with pytest.raises(ValueError, match="sampled"):
        explicit_trials(_spec(search={"algorithm": "tpe"}))


def test_translate_carries_divergence_and_precision_settings() -> None:
    spec = _spec(
        divergence={"l0": "initial", "val_margin": 0.5, "sustained_evals": 3},
        precision="bf16",
        head_precision="fp32",
        allow_tf32=False,
    )
    cfg = train_config(spec, {"method": "baseline", "lr": 1e-3, "seed": 0})
    assert cfg.divergence.l0 == "initial" and cfg.divergence.val_margin == 0.5 and cfg.divergence.sustained_evals == 3
    assert cfg.precision == "bf16" and cfg.head_precision == "fp32" and cfg.allow_tf32 is False
    # recorded: the manifest holds config.to_dict(), and the hash changes with each setting
    assert cfg.to_dict()["divergence"]["sustained_evals"] == 3 and cfg.to_dict()["allow_tf32"] is False
    default = train_config(_spec(), {"method": "baseline", "lr": 1e-3, "seed": 0})
    assert default.divergence.sustained_evals == 0 and default.allow_tf32 is True
    assert default.config_hash() != cfg.config_hash()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("divergence", {"sustained_evals": -1}, "sustained_evals"),
        ("divergence", {"l0": "median"}, "l0"),
        ("head_precision", "fp16", "head_precision"),
    ],
)
def test_bad_divergence_and_precision_fields_are_named(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        _spec(**{field: value})


def test_tpe_trials_carry_their_parameters_where_grid_trials_do() -> None:
    from search_spaces.run.labelled_optuna import LabelledOptunaSearch

    spec = _spec(methods=["baseline", "z_loss"], search={"algorithm": "tpe"}, lr=[1e-3, 1e-2],
                 coefficients={"z_loss_weight": [1e-4, 1e-3]}, seeds=[7])  # fmt: skip
    sampler = optuna.samplers.RandomSampler(seed=0)
    search = LabelledOptunaSearch(sweep_id="s1", default_method="baseline", space=define_by_run(spec),
                                  metric="val_loss", mode="min", sampler=sampler)  # fmt: skip
    for i in range(4):
        config = search.suggest(f"t{i}")
        assert isinstance(config, dict) and set(config) == {"params"}
        params = trial_params(config)
        assert params["seed"] == 7 and params["lr"] in (1e-3, 1e-2) and params["method"] in spec.methods
        # Optuna's parameter names stay flat: an optuna.db of an earlier sweep resumes unchanged.
        ot_trial = search._ot_trials[f"t{i}"]
        assert "lr" in ot_trial.params and ot_trial.user_attrs["tune_trial_id"] == f"t{i}"
        assert ot_trial.user_attrs["method"] == params["method"]
    explicit = explicit_trials(_spec(lr=[1e-3]))
    assert trial_params({"params": explicit[0]})["lr"] == 1e-3
