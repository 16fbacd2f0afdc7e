"""SweepSpec validation (errors name the field), presets, --set overrides and the JSON schema."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from search_spaces.spec.presets import (
    OEC_LR_GRID,
    apply_overrides,
    get_preset,
    list_presets,
    parse_set_args,
)
from search_spaces.spec.sweep_spec import Range, SweepSpec

BASE: dict[str, Any] = {"name": "t", "budget": {"steps": 20, "eval_interval": 5}, "methods": ["baseline"]}


def _error(doc: dict[str, Any], **context: Any) -> tuple[str, str]:
    """(dotted location, message) of the first validation error of ``doc``."""
    with pytest.raises(ValidationError) as info:
        SweepSpec.model_validate({**BASE, **doc}, context=context or None)
    err = info.value.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]


def test_unknown_method_is_named() -> None:
    loc, msg = _error({"methods": ["baseline", "z_los"]})
    assert loc == "methods"
    assert "methods[1]" in msg and "z_los" in msg


def test_combined_methods_are_canonical() -> None:
    spec = SweepSpec.model_validate({**BASE, "methods": ["mu_centering+simreg", "z_loss"]})
    assert spec.methods == ["simreg+mu_centering", "z_loss"]


@pytest.mark.parametrize(
    ("lr", "needle"),
    [
        ({"distribution": "loguniform", "low": 1e-2, "high": 1e-3}, "inverted range"),
        ({"distribution": "uniform", "low": 1e-2, "high": 1e-2}, "empty range"),
        ({"distribution": "loguniform", "low": 0.0, "high": 1e-2}, "low > 0"),
    ],
)
def test_bad_ranges_are_named(lr: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        SweepSpec.model_validate({**BASE, "lr": lr, "search": {"algorithm": "tpe"}})
    errors = info.value.errors()
    assert len(errors) == 1 and errors[0]["loc"] == ("lr",) and needle in errors[0]["msg"], errors


@pytest.mark.parametrize("lr", [0.0, -1e-3, [1e-3, -1.0], []])
def test_non_positive_lr_is_refused(lr: Any) -> None:
    loc, msg = _error({"lr": lr})
    assert loc.startswith("lr")
    assert "positive" in msg or "empty" in msg


def test_range_errors_inside_coefficients_name_the_coefficient() -> None:
    loc, msg = _error({"methods": ["z_loss"], "search": {"algorithm": "tpe"},
                       "coefficients": {"z_loss_weight": {"distribution": "loguniform", "low": 1, "hi": 2}}})
    assert loc == "coefficients.z_loss_weight" and "hi" in msg


def test_coefficient_names_and_signs() -> None:
    loc, msg = _error({"coefficients": {"z_loss_wieght": 1e-4}})
    assert loc == "coefficients" and "z_loss_wieght" in msg
    loc, msg = _error({"methods": ["softcap"], "coefficients": {"softcap_cap": 0.0}})
    assert loc == "coefficients" and "softcap_cap" in msg and "positive" in msg


def test_grid_larger_than_the_maximum_is_refused() -> None:
    doc = {"methods": ["z_loss"], "lr": [1e-3] * 1 + [2e-3, 3e-3], "coefficients": {"z_loss_weight": [1e-4, 1e-3]},
           "seeds": [0, 1], "max_trials": 10}  # fmt: skip
    assert SweepSpec.model_validate({**BASE, **{**doc, "max_trials": 12}}).num_trials() == 12
    _, msg = _error(doc)
    assert "12 trials" in msg and "max_trials" in msg
    _, msg = _error({**doc, "max_trials": 100}, max_trials=5)
    assert "maximum of 5" in msg


def test_grid_cannot_expand_a_range() -> None:
    _, msg = _error({"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}})
    assert "lr" in msg and "grid" in msg


def test_resource_request_no_node_can_hold() -> None:
    doc = {"resources": {"workers": 1, "cpus_per_worker": 8}}
    SweepSpec.model_validate({**BASE, **doc})  # no cluster given: nothing to check against
    _, msg = _error(doc, cluster_resources=[{"CPU": 4}, {"CPU": 2}])
    assert msg.startswith("Value error, resources:") and "CPU: 8" in msg
    _, msg = _error({"resources": {"workers": 3, "cpus_per_worker": 2}, "data": {"batch_size": 6}},
                    cluster_resources={"CPU": 4})
    assert "at most 2" in msg
    gpu = {"resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 1}}
    _, msg = _error(gpu, cluster_resources=[{"CPU": 16}])
    assert "GPU" in msg


def test_unknown_fields_are_errors() -> None:
    loc, msg = _error({"budget": {"steps": 10, "eval_intervall": 5}})
    assert loc == "budget.eval_intervall" and "Extra inputs" in msg
    loc, _ = _error({"serach": {}})
    assert loc == "serach"


def test_model_preset_and_overrides_are_checked() -> None:
    loc, msg = _error({"model": {"preset": "huge"}})
    assert loc == "model" and "huge" in msg
    _, msg = _error({"model": {"preset": "tiny", "overrides": {"n_layers": 3}}})
    assert "n_layers" in msg


def test_budget_in_steps_or_tokens() -> None:
    spec = SweepSpec.model_validate({**BASE, "budget": {"tokens": 1000}, "data": {"seq_len": 10, "batch_size": 4}})
    assert spec.total_steps() == 25 and spec.total_tokens() == 1000
    _, msg = _error({"budget": {"steps": 3, "tokens": 1000}})
    assert "not both" in msg


def test_micro_batch_must_divide_each_workers_batch() -> None:
    data = {"data": {"batch_size": 8}}
    _, message = _error({**data, "budget": {**BASE["budget"], "micro_batch": 3}})
    assert message.startswith("Value error, budget.micro_batch: 3 must divide")
    # 8 sequences over 2 workers is 4 per worker: 8 divides the batch but not a worker's share
    _, message = _error({**data, "budget": {**BASE["budget"], "micro_batch": 8}, "resources": {"workers": 2}})
    assert "budget.micro_batch" in message and "(4:" in message
    loc, message = _error({**data, "budget": {**BASE["budget"], "micro_batch": 0}})
    assert loc == "budget.micro_batch" and "greater than or equal to 1" in message
    spec = SweepSpec.model_validate({**BASE, **data, "budget": {**BASE["budget"], "micro_batch": 2}})
    assert spec.data_config().micro_batch == 2 and spec.data_config().micro_steps(8) == 4


def test_num_trials_per_search() -> None:
    spec = SweepSpec.model_validate(
        {**BASE, "methods": ["baseline", "z_loss", "simreg"], "lr": [1e-3, 1e-2],
         "coefficients": {"z_loss_weight": [1e-4, 1e-3, 1e-2], "simreg_weight": 0.1}, "seeds": [0, 1]}
    )  # fmt: skip
    assert spec.num_trials() == (2 + 2 * 3 + 2) * 2
    tpe = SweepSpec.model_validate({**BASE, "search": {"algorithm": "tpe", "num_samples": 7}, "seeds": [0, 1]})
    assert tpe.num_trials() == 7
    rnd = SweepSpec.model_validate({**BASE, "search": {"algorithm": "random", "num_samples": 3}, "seeds": [0, 1]})
    assert rnd.num_trials() == 6


def test_yaml_and_json_are_the_same_document() -> None:
    spec = get_preset("simreg-tpe")
    again = SweepSpec.model_validate(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json"))))
    assert again == spec
    assert SweepSpec.model_validate_json(spec.model_dump_json()) == spec
    assert isinstance(spec.lr, Range)


def test_spec_yaml_reads_on_and_yes_as_words_and_exponents_as_numbers() -> None:
    """The documented ``eval: {on: confirm}`` must not become the key ``True`` (YAML 1.1's booleans)."""
    from search_spaces.spec.sweep_spec import load_yaml

    doc = load_yaml("eval: {tasks: [lossweep_next_line], on: confirm}\nx: [yes, no, off, true, False]\nlr: 1e-3\n")
    assert doc == {"eval": {"tasks": ["lossweep_next_line"], "on": "confirm"}, "x": ["yes", "no", "off", True, False],
                   "lr": 0.001}  # fmt: skip
    spec = SweepSpec.model_validate({**BASE, **load_yaml("eval:\n  tasks: [lossweep_next_line]\n  on: all\n")})
    assert spec.eval is not None and spec.eval.on == "all"


def test_json_schema_has_examples() -> None:
    schema = SweepSpec.model_json_schema()
    assert schema["examples"][0]["methods"]
    SweepSpec.model_validate(schema["examples"][0])


# ------------------------------------------------------------------------------------ presets
def test_every_preset_validates_and_counts() -> None:
    names = list_presets()
    assert set(names) == {
        "oec-lr-sensitivity", "oec-lambda-robustness", "simreg-tpe", "all-methods-tpe", "oec-paper",
        "oec-paper-sizes", "demo"
    }  # fmt: skip
    counts = {name: get_preset(name).num_trials() for name in names}
    assert counts["oec-lr-sensitivity"] == 5 * 7 + 5 * 3  # the search, then each method's best on 3 fresh seeds
    assert counts["oec-lambda-robustness"] == 2 * 4 * 7
    # Every size of the paper: the oec-paper grid at each, then each method's best at each size confirmed.
    assert counts["oec-paper-sizes"] == 5 * (5 * 7 + 5 * 3) == 5 * counts["oec-paper"]
    assert get_preset("oec-paper-sizes").model.presets() == ["oec-16m", "oec-29m", "oec-57m", "oec-109m", "oec-221m"]
    assert get_preset("oec-lr-sensitivity").lr == OEC_LR_GRID
    assert get_preset("simreg-tpe").scheduler.name == "asha"
    assert get_preset("all-methods-tpe").search.algorithm == "tpe"
    assert all(description for description in names.values())
    # Presets that compare methods: the same learning rates (or the same TPE trials) for every method,
    # baseline included, then a confirm stage on seeds the search never used.
    for name in ("oec-lr-sensitivity", "oec-paper", "oec-paper-sizes", "demo", "all-methods-tpe"):
        spec = get_preset(name)
        assert "baseline" in spec.methods and spec.confirm is not None
        assert not set(spec.confirm.seeds) & set(spec.seeds)
        assert spec.search.algorithm == "grid" or spec.search.num_samples % len(spec.methods) == 0


def test_presets_take_a_scale() -> None:
    spec = get_preset("oec-lr-sensitivity", model="oec-16m", tokenizer="bpe:50304", seq_len=2048, batch_size=64,
                      steps=100_000, warmup_steps=5000, gpus_per_worker=1, max_concurrent_trials=8)  # fmt: skip
    assert spec.model.preset == "oec-16m" and spec.total_steps() == 100_000 and spec.resources.gpus_per_worker == 1
    with pytest.raises(ValueError, match="unknown scale"):
        get_preset("demo", modle="tiny")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")


def test_set_overrides() -> None:
    sets = parse_set_args(["budget.tokens=20000", "lr=[1e-3, 1e-2]", "coefficients.z_loss_weight=[1e-5, 1e-4]",
                           "seeds=[0, 1]", "search.algorithm=grid", "model.overrides.n_layer=1",
                           "name=x1"])  # fmt: skip
    assert sets["lr"] == [1e-3, 1e-2] and sets["name"] == "x1"
    spec = apply_overrides(get_preset("demo"), sets)
    assert spec.budget.steps is None and spec.budget.tokens == 20000
    assert spec.model.overrides == {"n_layer": 1}
    assert spec.num_trials() == (2 + 2 * 2 + 2 + 2) * 2 + 4 * 2  # and each method's best on 2 confirm seeds
    assert apply_overrides(spec, {"seeds.1": 7}).seeds == [0, 7]


def test_set_overrides_errors() -> None:
    spec = get_preset("demo")
    with pytest.raises(KeyError, match="budget has no 'stepz'"):
        apply_overrides(spec, {"budget.stepz": 3})
    with pytest.raises(KeyError, match="the spec has no 'nmae'"):
        apply_overrides(spec, {"nmae": "x"})
    with pytest.raises(ValidationError) as info:
        apply_overrides(spec, parse_set_args(["lr=-0.1"]))
    assert info.value.errors()[0]["loc"][0] == "lr"
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set_args(["budget.steps"])


def test_spec_modules_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import search_spaces.spec.sweep_spec, search_spaces.spec.presets, search_spaces.spec.spaces\n"
        "import search_spaces.run.results, search_spaces.run.storage, search_spaces.spec.translate\n"
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_study_specs_in_the_docs_are_valid_sweeps() -> None:
    # docs/results.md runs these files with `lossweep sweep run FILE`: they must stay valid specs.
    from pathlib import Path

    from search_spaces.run.results import load_spec

    studies = sorted((Path(__file__).resolve().parents[2] / "docs" / "studies").glob("*.yaml"))
    assert studies
    for path in studies:
        spec = load_spec(path)
        assert spec.name == path.stem and spec.num_trials() >= len(spec.methods) * len(spec.seeds)


CONFIRM: dict[str, Any] = {"methods": ["baseline", "mu_centering"], "seeds": [0, 1]}


def test_confirm_stage_counts_its_trials() -> None:
    spec = SweepSpec.model_validate({**BASE, **CONFIRM, "lr": [1e-3, 1e-2], "confirm": {"seeds": [10, 11, 12]}})
    assert spec.confirm is not None and spec.confirm.top_k == 1
    assert spec.search_trials() == 2 * 2 * 2
    assert spec.confirm_trials() == 2 * 1 * 3
    assert spec.num_trials() == 8 + 6


@pytest.mark.parametrize(
    ("confirm", "extra", "field", "needle"),
    [
        ({"seeds": [1, 5]}, {}, "confirm", "[1] are also search seeds"),
        ({"seeds": [5], "top_k": 0}, {}, "confirm.top_k", "greater than or equal to 1"),
        ({"seeds": [5]}, {"methods": ["baseline"]}, "confirm", "one method"),
        ({"seeds": []}, {}, "confirm.seeds", "at least 1"),
        ({"seeds": [5, 5]}, {}, "confirm.seeds", "distinct"),
    ],
)
def test_confirm_stage_errors_name_the_field(
    confirm: dict[str, Any], extra: dict[str, Any], field: str, needle: str
) -> None:
    loc, msg = _error({**CONFIRM, **extra, "confirm": confirm})
    assert loc == field and needle in msg
