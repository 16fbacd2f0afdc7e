"""The loss registry: every term's declaration is valid and reaches its hook; the views consumers read."""

from __future__ import annotations

import pytest

from trainables.losses.registry import (
    BASELINE,
    COEFFICIENTS,
    TERMS,
    coefficient,
    default_coefficients,
    method_coefficients,
    method_label,
    method_rank,
)
from trainables.losses.term import HOOKS, Coefficient, Term


@pytest.mark.parametrize("name", list(TERMS))
def test_every_term_reaches_its_hook(name: str) -> None:
    term = TERMS[name]
    assert term.name == name and callable(term.hook())
    assert getattr(term.module(), HOOKS[term.kind]) is term.hook()
    for c in term.coefficients:
        if c.default is not None:
            assert c.coerce(c.default, c.name) == c.default
        if c.low is not None:
            assert c.search_range()["low"] == c.low


def test_flat_coefficient_views() -> None:
    assert len(set(COEFFICIENTS)) == len(COEFFICIENTS)
    builtin = {"z_loss_weight", "mu_loss_weight", "softcap_cap", "simreg_weight", "simreg_temperature"}
    assert builtin <= set(COEFFICIENTS)
    assert "simreg_causal" not in COEFFICIENTS  # bool and int coefficients are settings, not searched
    assert coefficient("simreg_temperature").positive and not coefficient("z_loss_weight").positive
    with pytest.raises(ValueError, match="unknown coefficient 'simreg_tau'; known: z_loss_weight"):
        coefficient("simreg_tau")
    assert default_coefficients()["softcap_cap"] == 30.0
    assert method_coefficients("simreg+mu_centering") == ("simreg_weight", "simreg_temperature")
    assert method_coefficients(BASELINE) == ()


def test_labels_and_order() -> None:
    assert method_label("simreg+mu_centering") == "SimReg + μ-centering"
    assert method_label(BASELINE) == BASELINE and method_label("unknown") == "unknown"
    ranked = sorted(["simreg+mu_centering", "mu_centering", "z_loss", BASELINE, "softcap"], key=method_rank)
    assert ranked[0] == BASELINE and ranked[-1] == "simreg+mu_centering"
    assert ranked.index("z_loss") < ranked.index("softcap") < ranked.index("mu_centering")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Term(name="Bad-Name", kind="penalty", label="x", implementation="m"), "must match"),
        (lambda: Term(name="baseline", kind="after_step", label="x", implementation="m"), "not be 'baseline'"),
        (lambda: Term(name="t", kind="after_step", label=" ", implementation="m"), "label"),
        (lambda: Term(name="t", kind="penalty", label="x", implementation="m"), "first coefficient is 'weight'"),
        (
            lambda: Term(
                name="t",
                kind="after_step",
                label="x",
                implementation="m",
                coefficients=(Coefficient(name="weight", default=1.0),),
            ),
            "only a penalty has a weight",
        ),
        (lambda: Coefficient(name="c", kind="float", default=-1.0), "must be >= 0"),
        (lambda: Coefficient(name="c", positive=True, default=0.0), "must be > 0"),
        (lambda: Coefficient(name="c", low=1.0), "both low and high"),
        (lambda: Coefficient(name="c", log_scale=True, low=0.0, high=1.0), "log-scale range needs low > 0"),
        (lambda: Coefficient(name="c", kind="str"), "kind must be one of"),  # type: ignore[arg-type]
    ],
)
def test_bad_declarations_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_the_docs_and_presets_list_every_built_in_term() -> None:
    from pathlib import Path

    from search_spaces.spec.presets import ALL_METHODS
    from trainables.losses.registry import BUILTIN_TERMS, TERMS

    sweep_dir_doc = (Path(__file__).resolve().parents[2] / "docs" / "sweep-dir.md").read_text()
    method_row = next(line for line in sweep_dir_doc.splitlines() if line.startswith("| `method` |"))
    for name in BUILTIN_TERMS:
        assert f"`{name}`" in method_row, name
        assert name in ALL_METHODS, name
        for flat in TERMS[name].flat_coefficients():
            if TERMS[name].flat_coefficients()[flat].kind == "float" and flat.endswith("_weight"):
                assert f"`{flat}`" in sweep_dir_doc, flat
