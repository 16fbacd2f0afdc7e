"""The registry of loss terms: what each penalty is called, its default weight and its parameters.

A *term* is a penalty added to cross entropy: ``total = CE + Σ weight · term``. Each lives in its own
module (``trainables/losses/<name>.py``) exposing ``term(inputs, **params) -> (value, metrics)``,
where ``value`` is the unweighted scalar and ``metrics`` maps metric names to detached scalars.

This module is torch-free: the service and the sweep spec validate loss configurations with it
without loading torch. The term functions themselves are imported on first use (``TermSpec.function``).

Soft-capping and μ-centering are not terms: soft-capping transforms the LM head's logits (the model
applies ``softcap``) and μ-centering is a hook after each optimizer step (``center_output_embeddings_``).
``LossConfig`` carries both as fields.

Adding a penalty: write ``trainables/losses/<name>.py`` with a ``term`` function, add one ``TermSpec``
below, a search-space entry and a test; the training loop does not change.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

ParamKind = Literal["float", "bool", "int"]


@dataclass(frozen=True, kw_only=True)
class TermInputs:
    """Everything a term may read; prepared once per step by ``combine.total_loss``.

    ``log_z`` is the per-token logsumexp of the logits computed once together with cross entropy
    (float32, shape ``[N]`` over the flattened ``B*T`` tokens, 0 at ignored tokens); ``valid`` the
    ``[N]`` mask of tokens whose label is not -100 and ``n_valid`` its count as a 0-d tensor.
    """

    logits: Tensor  # [B, T, V] as produced by the head (soft-capped if configured)
    labels: Tensor  # [B, T] next-token targets, -100 = ignored
    hidden: Tensor | None  # [B, T, H] final-norm output (the head's input)
    w_out: Tensor | None  # [V, H] output embeddings
    log_z: Tensor  # [N] float32
    valid: Tensor  # [N] bool
    n_valid: Tensor  # [] long


TermFn = Callable[..., "tuple[Tensor, dict[str, Tensor]]"]


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """One parameter of a term, validated by ``LossConfig`` (torch-free)."""

    name: str
    kind: ParamKind
    default: float | bool | int | None  # None: optional, left out of the config unless given
    positive: bool = False  # must be > 0
    doc: str = ""

    def coerce(self, value: Any, where: str) -> float | bool | int:
        """``value`` converted to this parameter's kind, or a ValueError naming ``where``."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.strip().lower()]
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{where}: must be finite, got {value!r}")
        if self.positive and not number > 0:
            raise ValueError(f"{where}: must be > 0, got {value!r}")
        if self.kind == "int":
            if number != int(number):
                raise ValueError(f"{where}: expected an integer, got {value!r}")
            return int(number)
        return number


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


@dataclass(frozen=True, kw_only=True)
class TermSpec:
    """A registered penalty: name, implementing module, default weight, parameters, needed inputs."""

    name: str
    module: str
    default_weight: float
    params: tuple[ParamSpec, ...] = ()
    needs: frozenset[str] = frozenset()  # subset of {"hidden", "w_out"} beyond logits/labels
    summary: str = ""

    @property
    def function(self) -> TermFn:
        """The term's ``term(inputs, **params)`` function (imports torch on first use)."""
        return importlib.import_module(self.module).term

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise ValueError(f"loss term {self.name!r} has no parameter {name!r} (known: {known})")


TERMS: Mapping[str, TermSpec] = MappingProxyType(
    {
        "z_loss": TermSpec(
            name="z_loss",
            module="trainables.losses.z_loss",
            default_weight=1e-4,
            summary="mean over valid tokens of (log Z)^2 (PaLM); shares CE's logsumexp",
        ),
        "mu_loss": TermSpec(
            name="mu_loss",
            module="trainables.losses.mu_loss",
            default_weight=1e-4,
            needs=frozenset({"w_out"}),
            summary="||mean of the output embeddings||^2 (OEC)",
        ),
        "simreg": TermSpec(
            name="simreg",
            module="trainables.losses.simreg",
            default_weight=0.1,
            needs=frozenset({"hidden"}),
            params=(
                ParamSpec(name="temperature", kind="float", default=0.1, positive=True, doc="contrastive temperature"),
                ParamSpec(name="causal", kind="bool", default=False, doc="positives and contrast only from s < t"),
                ParamSpec(name="normalize", kind="bool", default=True, doc="L2-normalise hidden states first"),
                ParamSpec(
                    name="chunk_budget",
                    kind="int",
                    default=None,
                    positive=True,
                    doc="max elements of one similarity block (memory bound; does not change the value)",
                ),
            ),
            summary="supervised-contrastive similarity of same-next-token hidden states (this project's "
            "interpretation of SimReg, see docs/losses.md)",
        ),
    }
)


def get_term(name: str) -> TermSpec:
    """The registered term called ``name``; a ValueError listing the known names otherwise."""
    try:
        return TERMS[name]
    except KeyError:
        hint = ""
        if name in ("softcap", "mu_centering"):
            hint = f" ({name} is not a penalty term: set LossConfig.{name})"
        raise ValueError(f"unknown loss term {name!r}{hint}; known terms: {', '.join(TERMS)}") from None
