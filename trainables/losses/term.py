"""What a loss term is: its declaration (name, kind, label, coefficients) and its hooks.

A ``Term`` is one object. Its declaration is torch-free, so the service and the sweep spec read names,
coefficients and labels without loading torch; its hooks live in the module named by
``implementation`` and are imported on first call:

- ``kind="penalty"``: ``penalty(inputs: TermInputs, **params) -> (value, metrics)``; the objective adds
  ``weight · value`` to cross entropy. A penalty's first coefficient is its ``weight``.
- ``kind="logit_transform"``: ``transform(logits, **params) -> logits``, applied by the model's head, so
  CE, the penalties and the diagnostics all see transformed logits (soft-capping).
- ``kind="after_step"``: ``after_step(model, **params)``, run under no_grad after each optimizer step
  (μ-centering); ``model.w_out`` is the output embedding ``[V, H]``.

A penalty that averages over something other than valid tokens (SimReg: its anchors) may also define
``count(labels, **params) -> Tensor``, the number of those units in a batch (a 0-d long tensor computed
from the labels alone). The engine sums it over the whole optimizer step (every rank and micro-batch)
before any backward pass and hands the total in as ``TermInputs.count_total``, so that a step split
over ranks or micro-batches averages over the same units as one pass over the whole batch.

Each coefficient has a flat name ``<term>_<coefficient>`` (``simreg_temperature``); float coefficients are
what a sweep spec's ``coefficients:`` searches over, bool and int ones are settings of the term.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from torch import Tensor

Kind = Literal["penalty", "logit_transform", "after_step"]
CoefficientKind = Literal["float", "bool", "int"]
KINDS: tuple[str, ...] = get_args(Kind)
HOOKS: dict[str, str] = {"penalty": "penalty", "logit_transform": "transform", "after_step": "after_step"}
WEIGHT = "weight"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


@dataclass(frozen=True, kw_only=True)
class TermInputs:
    """Everything a penalty may read; prepared once per step by ``combine.total_loss``.

    ``log_z`` is the per-token logsumexp of the logits computed once together with cross entropy
    (float32, shape ``[N]`` over the flattened ``B*T`` tokens, 0 at ignored tokens); ``valid`` the
    ``[N]`` mask of tokens whose label is not -100 and ``n_valid`` its count as a 0-d tensor.

    When one optimizer step is computed in parts (DDP ranks, micro-batches), ``n_valid_total`` is the
    valid tokens of the whole step and ``count_total`` the term's own ``count`` summed over it; the
    engine weighs each part's loss by ``n_valid / n_valid_total``. Both are None for a single pass.
    """

    logits: Tensor  # [B, T, V] as produced by the head (transformed if configured)
    labels: Tensor  # [B, T] next-token targets, -100 = ignored
    hidden: Tensor | None  # [B, T, H] final-norm output (the head's input)
    w_out: Tensor | None  # [V, H] output embeddings
    log_z: Tensor  # [N] float32
    valid: Tensor  # [N] bool
    n_valid: Tensor  # [] long
    n_valid_total: Tensor | None = None  # [] valid tokens of the whole step (all parts)
    count_total: Tensor | None = None  # [] this term's count over the whole step (all parts)


@dataclass(frozen=True, kw_only=True)
class Coefficient:
    """One coefficient of a term. ``default`` None: optional, left out of the config unless given.
    ``log_scale``: searched and plotted on a log axis. ``low``/``high``: the range worth searching."""

    name: str
    kind: CoefficientKind = "float"
    default: float | bool | int | None = None
    positive: bool = False  # must be > 0 (otherwise numbers must be >= 0)
    log_scale: bool = False
    low: float | None = None
    high: float | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"coefficient name {self.name!r} must match {_NAME.pattern}")
        if self.kind not in get_args(CoefficientKind):
            raise ValueError(f"coefficient {self.name!r}: kind must be one of float, bool, int, got {self.kind!r}")
        if self.default is not None:
            self.coerce(self.default, f"coefficient {self.name!r}: default")
        if (self.low is None) != (self.high is None):
            raise ValueError(f"coefficient {self.name!r}: give both low and high, or neither")
        if self.low is not None and self.high is not None:
            self.coerce(self.low, f"coefficient {self.name!r}: low")
            if not float(self.low) < float(self.high):
                raise ValueError(f"coefficient {self.name!r}: low must be < high")
            if self.log_scale and not float(self.low) > 0:
                raise ValueError(f"coefficient {self.name!r}: a log-scale range needs low > 0")

    @property
    def swept(self) -> bool:
        """Searched over by a sweep (a flat coefficient of the spec): the float coefficients."""
        return self.kind == "float"

    def coerce(self, value: Any, where: str) -> float | bool | int:
        """``value`` converted to this coefficient's kind, or a ValueError naming ``where``."""
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
        if not self.positive and number < 0:
            raise ValueError(f"{where}: must be >= 0, got {value!r}")
        if self.kind == "int":
            if number != int(number):
                raise ValueError(f"{where}: expected an integer, got {value!r}")
            return int(number)
        return number

    def search_range(self) -> dict[str, Any]:
        """The range worth searching as a sweep-spec value (``{"distribution": ..., "low", "high"}``)."""
        if self.low is None or self.high is None:
            raise ValueError(f"coefficient {self.name!r} declares no search range")
        return {"distribution": "loguniform" if self.log_scale else "uniform", "low": self.low, "high": self.high}


def penalty_weight(default: float, low: float, high: float, doc: str = "λ") -> Coefficient:
    """A penalty's ``weight`` coefficient: a float >= 0 on a log scale, worth searching over [low, high]."""
    return Coefficient(name=WEIGHT, default=default, log_scale=True, low=low, high=high, doc=doc)


@dataclass(frozen=True, kw_only=True)
class Term:
    """A loss term: its declaration and its hooks (see the module docstring). ``label`` is the name a
    report shows; ``color``/``dash`` (optional) its line in the plots; ``source`` where it came from
    (``built-in`` or the distribution of a plugin). ``separate_head``: the term needs an LM head of its
    own, not the input embedding's tensor, and is refused on a model with ``tie_weights``. μ-loss and
    μ-centering do not: on a tied model they act on the one shared ``[V, H]`` tensor."""

    name: str
    kind: Kind
    label: str
    implementation: str  # module holding the hook named by HOOKS[kind]
    coefficients: tuple[Coefficient, ...] = ()
    summary: str = ""
    color: str | None = None
    dash: str | tuple[float, tuple[float, ...]] | None = None
    source: str = "built-in"
    separate_head: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or self.name == "baseline":
            raise ValueError(f"term name {self.name!r} must match {_NAME.pattern} and not be 'baseline'")
        if self.kind not in KINDS:
            raise ValueError(f"term {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"term {self.name!r}: label must be a non-empty string")
        if not isinstance(self.implementation, str) or not self.implementation.strip():
            raise ValueError(f"term {self.name!r}: implementation must be a module path")
        coefficients = tuple(self.coefficients)
        if not all(isinstance(c, Coefficient) for c in coefficients):
            raise ValueError(f"term {self.name!r}: coefficients must be Coefficient objects")
        names = [c.name for c in coefficients]
        if len(set(names)) != len(names):
            raise ValueError(f"term {self.name!r}: a coefficient is declared twice")
        if self.kind == "penalty":
            first = coefficients[0] if coefficients else None
            if first is None or first.name != WEIGHT or first.kind != "float" or first.default is None:
                raise ValueError(f"term {self.name!r}: a penalty's first coefficient is 'weight' (float, default)")
        elif WEIGHT in names:
            raise ValueError(f"term {self.name!r}: only a penalty has a weight")
        object.__setattr__(self, "coefficients", coefficients)

    # ------------------------------------------------------------ declaration
    @property
    def weight(self) -> Coefficient | None:
        """The penalty's weight (None for other kinds)."""
        return self.coefficients[0] if self.kind == "penalty" else None

    @property
    def params(self) -> tuple[Coefficient, ...]:
        """The coefficients other than the weight: the keyword arguments of the hook."""
        return self.coefficients[1:] if self.kind == "penalty" else self.coefficients

    def flat_name(self, coefficient: str) -> str:
        return f"{self.name}_{coefficient}"

    def flat_coefficients(self) -> dict[str, Coefficient]:
        """The swept coefficients under their flat names, in declaration order."""
        return {self.flat_name(c.name): c for c in self.coefficients if c.swept}

    def param(self, name: str) -> Coefficient:
        for c in self.params:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.params) or "none"
        raise ValueError(f"loss term {self.name!r} has no parameter {name!r} (known: {known})")

    # ------------------------------------------------------------------ hooks
    def module(self) -> ModuleType:
        """The implementation module (imports torch); an ImportError names the term and where it came from."""
        try:
            return importlib.import_module(self.implementation)
        except ImportError as exc:
            raise ImportError(
                f"loss term {self.name!r} ({self.source}): cannot import {self.implementation!r}: {exc}"
            ) from exc

    def hook(self) -> Any:
        function = getattr(self.module(), HOOKS[self.kind], None)
        if not callable(function):
            raise TypeError(
                f"loss term {self.name!r} ({self.source}): {self.implementation} has no function {HOOKS[self.kind]!r}"
            )
        return function

    def counter(self) -> Any | None:
        """The penalty's ``count`` hook (see the module docstring), or None when it averages over valid tokens."""
        if self.kind != "penalty":
            return None
        function = getattr(self.module(), "count", None)
        return function if callable(function) else None

    def penalty(self, inputs: TermInputs, **params: Any) -> tuple[Tensor, dict[str, Tensor]]:
        return self.hook()(inputs, **params)

    def transform(self, logits: Tensor, **params: Any) -> Tensor:
        return self.hook()(logits, **params)

    def after_step(self, model: Any, **params: Any) -> None:
        self.hook()(model, **params)
