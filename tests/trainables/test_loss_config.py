"""LossConfig: validation, CLI and sweep-method parsing, canonical names, round trips, torch-free import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trainables.losses.config import LossConfig, LossConfigError, TermConfig
from trainables.train.config import TrainConfig


# ------------------------------------------------------------------ from_cli
def test_cli_examples_from_the_docs() -> None:
    assert LossConfig.from_cli([]).method == "baseline"
    assert LossConfig.from_cli(["baseline"]) == LossConfig()
    z = LossConfig.from_cli(["z_loss=1e-4"])
    assert z.method == "z_loss" and z.terms == (TermConfig(name="z_loss", weight=1e-4),)
    assert LossConfig.from_cli(["mu_centering"]).mu_centering is True
    assert LossConfig.from_cli(["softcap=30"]).softcap == 30.0
    sr = LossConfig.from_cli(["simreg=0.1,temperature=0.1", "mu_centering"])
    assert sr.method == "simreg+mu_centering"
    assert dict(sr.terms[0].params) == {"temperature": 0.1, "causal": False, "normalize": True}
    causal = LossConfig.from_cli(["simreg=0.1,temperature=0.1,causal=true"])
    assert causal.terms[0].params["causal"] is True


def test_cli_defaults_and_spellings() -> None:
    assert LossConfig.from_cli(["z_loss"]).terms[0].weight == 1e-4
    assert LossConfig.from_cli(["mu_loss"]).terms[0].weight == 1e-4
    assert LossConfig.from_cli(["softcap"]).softcap == 30.0
    assert LossConfig.from_cli(["softcap,cap=15"]).softcap == 15.0
    sr = LossConfig.from_cli(["simreg"]).terms[0]
    assert (sr.weight, sr.params["temperature"]) == (0.1, 0.1)
    assert LossConfig.from_cli(["simreg,weight=0.3,normalize=false"]).terms[0].weight == 0.3
    assert LossConfig.from_cli(["Mu-Centering", "z-loss=1e-5"]).method == "z_loss+mu_centering"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["z_loss=-1"], "must be >= 0"),
        (["z_loss=abc"], "expected a number"),
        (["z_loss=nan"], "finite"),
        (["simreg=0.1,temperature=0"], "temperature: must be > 0"),
        (["simreg=0.1,temperature=-0.5"], "temperature: must be > 0"),
        (["simreg=0.1,causal=maybe"], "true or false"),
        (["simreg=0.1,tau=0.1"], "no parameter 'tau'"),
        (["simreg=0.1,temperature"], "key=value"),
        (["softcap=0"], "must be > 0"),
        (["softcap=-30"], "must be > 0"),
        (["softcap=30,scale=2"], "no parameter 'scale'"),
        (["mu_centering=1"], "takes no value"),
        (["zloss=1e-4"], "unknown loss 'zloss'"),
        (["z_loss=1e-4", "z_loss=1e-3"], "given twice"),
        (["baseline", "z_loss"], "cannot be combined"),
        (["z_loss="], "empty value"),
        ([""], "NAME"),
    ],
)
def test_cli_errors_name_the_problem(args: list[str], message: str) -> None:
    with pytest.raises(LossConfigError, match=message):
        LossConfig.from_cli(args)


# --------------------------------------------------------------- from_method
def test_from_method_defaults_and_params() -> None:
    assert LossConfig.from_method("baseline", {}) == LossConfig()
    z = LossConfig.from_method("z_loss", {})
    assert z.terms[0].weight == 1e-4
    mu = LossConfig.from_method("mu_loss", {"mu_loss_weight": 0.1, "lr": 3e-3, "z_loss_weight": None})
    assert mu.terms == (TermConfig(name="mu_loss", weight=0.1),)
    assert LossConfig.from_method("softcap", {}).softcap == 30.0
    assert LossConfig.from_method("softcap", {"softcap_cap": 50}).softcap == 50.0
    sr = LossConfig.from_method("simreg+mu_centering", {"simreg_weight": 0.3, "simreg_temperature": 0.05})
    assert sr.mu_centering and sr.terms[0].weight == 0.3 and sr.terms[0].params["temperature"] == 0.05
    causal = LossConfig.from_method("simreg", {"simreg_causal": True})
    assert causal.terms[0].params["causal"] is True


def test_from_method_ignores_parameters_of_other_methods() -> None:
    every = {"z_loss_weight": 1e-3, "mu_loss_weight": 1e-2, "softcap_cap": 20.0, "simreg_weight": 0.5}
    assert LossConfig.from_method("mu_centering", every) == LossConfig(mu_centering=True)


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("zloss", {}, "unknown part 'zloss'"),
        ("", {}, "non-empty"),
        ("baseline+z_loss", {}, "cannot be combined"),
        ("z_loss+z_loss", {}, "twice"),
        ("z_loss", {"z_loss_weight": -1.0}, "must be >= 0"),
        ("softcap", {"softcap_cap": 0.0}, "must be > 0"),
        ("simreg", {"simreg_temperature": 0.0}, "temperature: must be > 0"),
        ("simreg", {"simreg_temprature": 0.1}, "unknown loss parameter 'simreg_temprature'"),
    ],
)
def test_from_method_errors(method: str, params: dict[str, float], message: str) -> None:
    with pytest.raises(LossConfigError, match=message):
        LossConfig.from_method(method, params)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("baseline", "baseline"),
        ("mu_centering+simreg", "simreg+mu_centering"),
        ("softcap+z_loss", "z_loss+softcap"),
        ("mu_centering+mu_loss", "mu_loss+mu_centering"),
        ("simreg+softcap+z_loss", "z_loss+simreg+softcap"),
    ],
)
def test_method_is_canonical_and_round_trips(written: str, canonical: str) -> None:
    cfg = LossConfig.from_method(written, {})
    assert cfg.method == canonical
    assert LossConfig.from_method(canonical, {}) == cfg


def test_softcap_and_mu_centering_are_terms_and_fields() -> None:
    cfg = LossConfig.from_method("z_loss+softcap", {"z_loss_weight": 1e-5, "softcap_cap": 20.0})
    assert [t.name for t in cfg.terms] == ["z_loss", "softcap"] and cfg.softcap == 20.0
    assert LossConfig(terms=({"name": "softcap", "params": {"cap": 20.0}}, {"name": "z_loss", "weight": 1e-5})) == cfg
    assert LossConfig(terms=({"name": "mu_centering"},)) == LossConfig(mu_centering=True)
    # the manifest format is the one written before every kind of term was a TermConfig
    assert cfg.to_dict() == {
        "terms": [{"name": "z_loss", "weight": 1e-5, "params": {}}],
        "softcap": 20.0,
        "mu_centering": False,
    }
    with pytest.raises(LossConfigError, match="disagrees"):
        LossConfig(terms=({"name": "softcap", "params": {"cap": 20.0}},), softcap=30.0)


# ------------------------------------------------------------ direct + dicts
def test_direct_construction_validates_and_canonicalises() -> None:
    a = LossConfig(terms=(TermConfig(name="simreg"), TermConfig(name="z_loss", weight=0.0)))
    assert [t.name for t in a.terms] == ["z_loss", "simreg"]
    assert a.terms[0].weight == 0.0  # a zero weight is allowed (the term is still reported)
    b = LossConfig(terms=(TermConfig(name="z_loss", weight=0), TermConfig(name="simreg", params={"temperature": 0.1})))
    assert a == b
    with pytest.raises(LossConfigError, match="given twice"):
        LossConfig(terms=(TermConfig(name="z_loss"), TermConfig(name="z_loss", weight=1.0)))
    with pytest.raises(LossConfigError, match=r"'softcap' is a logit transform: it has no weight"):
        TermConfig(name="softcap", weight=30)
    with pytest.raises(LossConfigError, match=r"unknown loss term 'zloss'"):
        TermConfig(name="zloss")
    with pytest.raises(LossConfigError, match="weight: must be >= 0"):
        TermConfig(name="mu_loss", weight=-1e-4)
    with pytest.raises(LossConfigError, match="softcap"):
        LossConfig(softcap=0.0)
    with pytest.raises(LossConfigError, match="mu_centering"):
        LossConfig(mu_centering="yes")  # type: ignore[arg-type]


def test_dict_round_trip_through_json() -> None:
    cfg = LossConfig.from_cli(["z_loss=1e-4", "simreg=0.1,temperature=0.2,causal=true", "softcap=25", "mu_centering"])
    data = json.loads(json.dumps(cfg.to_dict()))
    assert LossConfig.from_dict(data) == cfg
    assert LossConfig.from_dict({}) == LossConfig()
    with pytest.raises(LossConfigError, match="unknown field"):
        LossConfig.from_dict({"terms": [], "temperature": 0.1})
    with pytest.raises(LossConfigError, match="unknown field"):
        LossConfig.from_dict({"terms": [{"name": "z_loss", "weigth": 1.0}]})


def test_train_config_carries_the_loss_config() -> None:
    loss = LossConfig.from_method("simreg+mu_centering", {"simreg_weight": 0.2})
    train = TrainConfig(loss=loss)
    again = TrainConfig.from_dict(json.loads(json.dumps(train.to_dict())))
    assert again.loss == loss and again.config_hash() == train.config_hash()
    # the same objective written two ways hashes the same
    other = TrainConfig(loss=LossConfig.from_cli(["mu_centering", "simreg=0.2,temperature=0.1,normalize=true"]))
    assert other.config_hash() == train.config_hash()


def test_equal_configs_hash_equal() -> None:
    a = LossConfig.from_cli(["simreg=0.1", "mu_centering"])
    b = LossConfig.from_method("mu_centering+simreg", {"simreg_temperature": 0.1})
    assert a == b and hash(a) == hash(b) and len({a, b, LossConfig()}) == 2


def test_describe() -> None:
    cfg = LossConfig.from_cli(["mu_loss=1e-4", "simreg=0.1", "softcap=30", "mu_centering"])
    assert cfg.describe().startswith("mu_loss(weight=0.0001)+simreg(weight=0.1, temperature=0.1")
    assert cfg.describe().endswith("+softcap(cap=30)+mu_centering")
    assert LossConfig().describe() == "baseline"


# ----------------------------------------------------------------- torch-free
@pytest.mark.parametrize("module", ["trainables.losses.config", "trainables.losses", "trainables.losses.registry"])
def test_import_does_not_load_torch(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "from trainables.losses.config import LossConfig\n"
        "LossConfig.from_cli(['simreg=0.1', 'mu_centering']).to_dict()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
