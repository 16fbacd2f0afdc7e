"""The registry of loss terms: the one place that knows every term, built-in or from a plugin.

Every consumer reads it instead of keeping a list of its own: the loss config and the CLI (names,
kinds, coefficients and their defaults), the sweep spec and the service (valid methods and flat
coefficient names, positivity), the search spaces (log scale), the analysis, reports and plots
(labels, order, colours) and ``/best-config`` (which columns are coefficients). ``TERMS`` holds the
built-in terms below, then the terms installed packages declare in the entry-point group
``lossweep.losses`` (``trainables.losses.plugins``), in name order. That order is the canonical order
of a method's parts (``simreg+mu_centering``) and of the terms in reports.

Torch-free: the declarations name the modules that implement them (imported on first use).
Adding a term: its module (``trainables/losses/<name>.py``), one ``Term`` below, its test.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from trainables.losses.plugins import load_plugins
from trainables.losses.term import Coefficient, Term, penalty_weight

BASELINE = "baseline"  # the method without any term: plain cross entropy

_BUILTIN: tuple[Term, ...] = (
    Term(
        name="z_loss",
        kind="penalty",
        label="z-loss",
        implementation="trainables.losses.z_loss",
        coefficients=(
            penalty_weight(1e-4, 1e-6, 1e-1, "λ (PaLM: 1e-4)"),
        ),
        summary="mean over valid tokens of (log Z)^2 (PaLM); shares CE's logsumexp",
        color="#E69F00",
        dash=(0, (6, 2)),
    ),
    Term(
        name="mu_loss",
        kind="penalty",
        label="μ-loss",
        implementation="trainables.losses.mu_loss",
        coefficients=(
            penalty_weight(1e-4, 1e-6, 1e-1, "λ (OEC: 1e-4)"),
        ),
        summary="||mean of the output embeddings||^2 (OEC)",
        color="#56B4E9",
        dash=(0, (2, 1.5)),
    ),
    Term(
        name="logit_mean",
        kind="penalty",
        label="logit-mean",
        implementation="trainables.losses.logit_mean",
        coefficients=(penalty_weight(1e-4, 1e-6, 1e-1),),
        summary="mean over valid tokens of (mean logit)^2: pins the mean logit mu·h at 0, CE unchanged",
        color="#0072B2",
        dash=(0, (1, 1.5)),
    ),
    Term(
        name="simreg",
        kind="penalty",
        label="SimReg",
        implementation="trainables.losses.simreg",
        coefficients=(
            penalty_weight(0.1, 1e-3, 1.0),
            Coefficient(
                name="temperature",
                default=0.1,
                positive=True,
                log_scale=True,
                low=0.03,
                high=1.0,
                doc="contrastive temperature τ",
            ),
            Coefficient(name="causal", kind="bool", default=False, doc="positives and contrast only from s < t"),
            Coefficient(name="normalize", kind="bool", default=True, doc="L2-normalise hidden states first"),
            Coefficient(
                name="chunk_budget",
                kind="int",
                positive=True,
                doc="max elements of one similarity block (memory bound; does not change the value)",
            ),
        ),
        summary="supervised-contrastive similarity of same-next-token hidden states (this project's "
        "interpretation of SimReg, see docs/losses.md)",
        color="#D55E00",
        dash="-",
    ),
    Term(
        name="softcap",
        kind="logit_transform",
        label="soft-cap",
        implementation="trainables.losses.softcap",
        coefficients=(
            Coefficient(name="cap", default=30.0, positive=True, low=5.0, high=50.0, doc="c in c·tanh(l/c)"),
        ),
        summary="logits <- cap · tanh(logits / cap) in the LM head (OEC v2, Gemma 2)",
        color="#CC79A7",
        dash=(0, (3, 2)),
    ),
    Term(
        name="mu_centering",
        kind="after_step",
        label="μ-centering",
        implementation="trainables.losses.mu_centering",
        summary="after every optimizer step, subtract the mean output embedding (OEC)",
        color="#009E73",
        dash=(0, (7, 2, 1.5, 2)),
    ),
)

_BUILTIN_TERMS = {t.name: t for t in _BUILTIN}
#: The names of the terms that ship with lossweep, in registry order (presets compare these).
BUILTIN_TERMS: tuple[str, ...] = tuple(_BUILTIN_TERMS)
TERMS: Mapping[str, Term] = MappingProxyType({**_BUILTIN_TERMS, **load_plugins(_BUILTIN_TERMS)})

#: Flat names of every swept coefficient (``z_loss_weight``, ``simreg_temperature``, ...), in registry order.
COEFFICIENTS: tuple[str, ...] = tuple(name for t in TERMS.values() for name in t.flat_coefficients())


def get_term(name: str) -> Term:
    """The registered term called ``name``; a ValueError listing the known names otherwise."""
    try:
        return TERMS[name]
    except KeyError:
        raise ValueError(f"unknown loss term {name!r}; known terms: {', '.join(TERMS)}") from None


def coefficient(flat_name: str) -> Coefficient:
    """The swept coefficient with flat name ``flat_name``; a ValueError listing the known ones otherwise."""
    for t in TERMS.values():
        found = t.flat_coefficients().get(flat_name)
        if found is not None:
            return found
    raise ValueError(f"unknown coefficient {flat_name!r}; known: {', '.join(COEFFICIENTS)}")


def default_coefficients() -> dict[str, float]:
    """Each swept coefficient's default value under its flat name (those with a default)."""
    return {
        name: float(c.default)
        for t in TERMS.values()
        for name, c in t.flat_coefficients().items()
        if c.default is not None
    }


def method_parts(method: str) -> list[str]:
    """The registered terms of a canonical method name (``baseline`` has none). No validation: an
    unknown part is returned as it is (``LossConfig.from_method`` validates)."""
    return [] if method == BASELINE else str(method).split("+")


def method_coefficients(method: str) -> tuple[str, ...]:
    """Flat names of the swept coefficients ``method`` (``simreg+mu_centering`` …) reads."""
    return tuple(name for part in method_parts(method) if part in TERMS for name in TERMS[part].flat_coefficients())


def method_label(method: str) -> str:
    """Human name of a method; combinations joined with `` + ``, unknown parts as they are."""
    if method == BASELINE:
        return BASELINE
    return " + ".join(TERMS[p].label if p in TERMS else p for p in method_parts(method))


def method_rank(method: str) -> int:
    """Sort key of methods in tables and plots: baseline first, then the single terms in registry
    order, then combinations and unknown names (equal rank: break ties by name)."""
    if method == BASELINE:
        return 0
    order = list(TERMS)
    return order.index(method) + 1 if method in TERMS else len(order) + 1
