"""LossConfig: cross entropy plus any set of registered terms, soft-capping and μ-centering.

Torch-free (the service and the sweep spec import it). A training run's objective is

    total = CE + Σ_terms weight · term          (terms: z_loss, mu_loss, simreg — see registry.py)

with two further switches that are not penalties: ``softcap`` (the model's head applies
``cap · tanh(l / cap)`` to its logits; ``trainables.model`` reads this field) and ``mu_centering``
(the training loop centres the output embeddings after every optimizer step).

Three ways in, one canonical form out:

- ``LossConfig.from_method("simreg+mu_centering", {"simreg_weight": 0.1})`` — a sweep trial: a method
  name (``baseline`` or ``+``-joined parts) and the flat sweep parameters ``z_loss_weight``,
  ``mu_loss_weight``, ``softcap_cap``, ``simreg_weight``, ``simreg_temperature`` (also
  ``simreg_causal``, ``simreg_normalize``); missing ones take defaults.
- ``LossConfig.from_cli(["z_loss=1e-4", "softcap=30"])`` — repeated ``--loss NAME[=VALUE][,key=value]``.
- ``LossConfig.from_dict(config.to_dict())`` — JSON round trip (manifests, Tune configs, Ray Jobs).

Terms are kept in a canonical order with every default parameter filled in, so equal objectives give
equal configs (and config hashes) however they were written. ``method`` gives the canonical name back.

SimReg here is **this project's interpretation** of the paper (a supervised-contrastive loss on the
L2-normalised final hidden states, positives = same next token in the sequence; PAPERS.md §2 and
``trainables/losses/simreg.py``, docs/losses.md): the paper does not state the exact form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainables.losses.registry import TERMS, get_term

if TYPE_CHECKING:
    from torch import Tensor

SOFTCAP = "softcap"
MU_CENTERING = "mu_centering"
BASELINE = "baseline"
DEFAULT_SOFTCAP = 30.0
METHOD_PARTS: tuple[str, ...] = (*TERMS, SOFTCAP, MU_CENTERING)  # canonical order of a method name


class LossConfigError(ValueError):
    """An invalid loss configuration; the message names the field and the problem."""


@dataclass(frozen=True, kw_only=True)
class TermConfig:
    """One penalty term: registered ``name``, ``weight`` (>= 0; None = the term's default) and ``params``
    (validated against the registry; defaults filled in)."""

    name: str
    weight: float = None  # type: ignore[assignment]  # filled with the term's default weight
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            spec = get_term(self.name)
        except ValueError as e:
            raise LossConfigError(str(e)) from None
        where = f"loss term {self.name!r}: weight"
        weight = spec.default_weight if self.weight is None else _weight(self.weight, where)
        if not isinstance(self.params, Mapping):
            raise LossConfigError(f"loss term {self.name!r}: params must be a mapping, got {self.params!r}")
        params: dict[str, Any] = {}
        for key in self.params:
            try:
                spec.param(key)
            except ValueError as e:
                raise LossConfigError(str(e)) from None
        for p in spec.params:  # registry order, so equal configs serialise identically
            if p.name in self.params and self.params[p.name] is not None:
                try:
                    params[p.name] = p.coerce(self.params[p.name], f"loss term {self.name!r}: {p.name}")
                except ValueError as e:
                    raise LossConfigError(str(e)) from None
            elif p.default is not None:
                params[p.name] = p.default
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "params", params)

    def __hash__(self) -> int:  # params is a dict: hash its items so configs can be set members / keys
        return hash((self.name, self.weight, tuple(sorted(self.params.items()))))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "params": dict(self.params)}

    def describe(self) -> str:
        inner = ", ".join([f"weight={self.weight:g}", *(f"{k}={_fmt(v)}" for k, v in self.params.items())])
        return f"{self.name}({inner})"


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """The objective of one run: CE + Σ weight·term, an optional logit soft-cap (applied by the model's
    head) and optional μ-centering (applied by the loop after each optimizer step). Baseline = defaults."""

    terms: tuple[TermConfig, ...] = ()
    softcap: float | None = None
    mu_centering: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.terms, str | bytes | Mapping) or not isinstance(self.terms, Sequence):
            raise LossConfigError(f"loss.terms must be a list of terms, got {self.terms!r}")
        terms = [_term(t) for t in self.terms]
        seen: set[str] = set()
        for t in terms:
            if t.name in seen:
                raise LossConfigError(f"loss term {t.name!r} is given twice")
            seen.add(t.name)
        order = list(TERMS)
        terms.sort(key=lambda t: order.index(t.name))
        object.__setattr__(self, "terms", tuple(terms))
        if self.softcap is not None:
            object.__setattr__(self, "softcap", _positive(self.softcap, "loss.softcap (the logit cap)"))
        if not isinstance(self.mu_centering, bool):
            raise LossConfigError(f"loss.mu_centering must be true or false, got {self.mu_centering!r}")

    # ------------------------------------------------------------------ views
    @property
    def method(self) -> str:
        """Canonical method name: the parts in ``METHOD_PARTS`` order joined by ``+``; ``baseline`` if none."""
        parts = [t.name for t in self.terms]
        if self.softcap is not None:
            parts.append(SOFTCAP)
        if self.mu_centering:
            parts.append(MU_CENTERING)
        return "+".join(parts) or BASELINE

    @property
    def needs(self) -> frozenset[str]:
        """Inputs the terms read besides logits and labels (``hidden``, ``w_out``)."""
        return frozenset().union(*(get_term(t.name).needs for t in self.terms))

    def term(self, name: str) -> TermConfig | None:
        return next((t for t in self.terms if t.name == name), None)

    def describe(self) -> str:
        """Human-readable, e.g. ``simreg(weight=0.1, temperature=0.1, causal=false, normalize=true)+mu_centering``."""
        parts = [t.describe() for t in self.terms]
        if self.softcap is not None:
            parts.append(f"{SOFTCAP}(cap={self.softcap:g})")
        if self.mu_centering:
            parts.append(MU_CENTERING)
        return "+".join(parts) or BASELINE

    def flat_params(self) -> dict[str, float | None]:
        """The numeric coefficients under their flat sweep names (``z_loss_weight``, ``mu_loss_weight``,
        ``softcap_cap``, ``simreg_weight``, ``simreg_temperature``), None where the method has none."""
        out: dict[str, float | None] = {}
        for name, spec in TERMS.items():
            tc = self.term(name)
            out[f"{name}_weight"] = tc.weight if tc else None
            for p in spec.params:
                if p.kind == "float":
                    out[f"{name}_{p.name}"] = tc.params.get(p.name) if tc else None
        out[f"{SOFTCAP}_cap"] = self.softcap
        return out

    # ------------------------------------------------------------- compute
    def compute(
        self, *, logits: Tensor, labels: Tensor, hidden: Tensor | None = None, w_out: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``trainables.losses.combine.total_loss(self, ...)``: ``(CE + Σ weight·term, metrics)``."""
        from trainables.losses.combine import total_loss

        return total_loss(self, logits=logits, labels=labels, hidden=hidden, w_out=w_out)

    def after_step_(self, w_out: Tensor) -> None:
        """The post-optimizer-step hook: centres ``w_out`` in place when ``mu_centering`` is on."""
        if self.mu_centering:
            from trainables.losses.mu_centering import center_output_embeddings_

            center_output_embeddings_(w_out)

    # ---------------------------------------------------------- round trip
    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": [t.to_dict() for t in self.terms],
            "softcap": self.softcap,
            "mu_centering": self.mu_centering,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        if not isinstance(data, Mapping):
            raise LossConfigError(f"loss must be a mapping, got {data!r}")
        unknown = sorted(set(data) - {"terms", "softcap", "mu_centering"})
        if unknown:
            raise LossConfigError(f"loss: unknown field(s) {', '.join(unknown)} (known: terms, softcap, mu_centering)")
        return cls(
            terms=tuple(data.get("terms") or ()),
            softcap=data.get("softcap"),
            mu_centering=data.get("mu_centering", False),
        )

    # -------------------------------------------------------------- methods
    @classmethod
    def from_method(cls, method: str, params: Mapping[str, Any] | None = None) -> LossConfig:
        """A config from a method name (``baseline``, a part of ``METHOD_PARTS`` or a ``+`` join such as
        ``simreg+mu_centering``) and flat sweep parameters (``<term>_weight``, ``<term>_<param>``,
        ``softcap_cap``). Missing or None parameters take defaults; parameters of parts the method does
        not contain are ignored (a sweep passes all of them); an unknown ``<part>_...`` name is an error.
        Keys that belong to no loss part (``lr``, ``seed``, ...) are ignored."""
        params = dict(params or {})
        parts = _method_parts(method)
        _check_flat_names(params)
        terms: list[TermConfig] = []
        for name in parts:
            if name in TERMS:
                spec = TERMS[name]
                term_params = {p.name: params.get(f"{name}_{p.name}") for p in spec.params}
                terms.append(
                    TermConfig(
                        name=name,
                        weight=params.get(f"{name}_weight"),
                        params={k: v for k, v in term_params.items() if v is not None},
                    )
                )
        softcap = None
        if SOFTCAP in parts:
            cap = params.get(f"{SOFTCAP}_cap")
            softcap = DEFAULT_SOFTCAP if cap is None else cap
        return cls(terms=tuple(terms), softcap=softcap, mu_centering=MU_CENTERING in parts)

    @classmethod
    def from_cli(cls, args: Sequence[str]) -> LossConfig:
        """A config from repeated ``--loss NAME[=VALUE][,key=value...]`` strings.

        ``z_loss``/``mu_loss``/``simreg``: VALUE is the weight (default per term), keys are the term's
        parameters (``simreg=0.1,temperature=0.1,causal=true``); ``softcap[=CAP]`` (default 30);
        ``mu_centering`` (no value); ``baseline`` alone or no argument: plain CE.
        """
        if isinstance(args, str):
            args = [args]
        terms: list[TermConfig] = []
        softcap: float | None = None
        mu_centering = False
        seen: set[str] = set()
        for arg in args:
            name, value, options = _parse_cli_item(arg)
            if name in seen:
                raise LossConfigError(f"--loss {arg!r}: {name} is given twice")
            seen.add(name)
            where = f"--loss {arg!r}"
            if name == BASELINE:
                if value is not None or options:
                    raise LossConfigError(f"{where}: baseline takes no value")
            elif name == MU_CENTERING:
                if value is not None or options:
                    raise LossConfigError(f"{where}: mu_centering takes no value (it has no hyperparameter)")
                mu_centering = True
            elif name == SOFTCAP:
                extra = sorted(set(options) - {"cap"})
                if extra:
                    raise LossConfigError(f"{where}: softcap has no parameter {extra[0]!r} (known: cap)")
                if value is not None and "cap" in options:
                    raise LossConfigError(f"{where}: the cap is given twice")
                raw = value if value is not None else options.get("cap")
                softcap = DEFAULT_SOFTCAP if raw is None else _positive(_number(raw, f"{where}: cap"), f"{where}: cap")
            else:
                if value is not None and "weight" in options:
                    raise LossConfigError(f"{where}: the weight is given twice")
                weight = value if value is not None else options.pop("weight", None)
                options.pop("weight", None)
                try:
                    terms.append(
                        TermConfig(
                            name=name,
                            weight=None if weight is None else _number(weight, f"{where}: weight"),
                            params=options,
                        )
                    )
                except LossConfigError as e:
                    raise LossConfigError(f"{where}: {e}") from None
        if BASELINE in seen and len(seen) > 1:
            raise LossConfigError("--loss baseline cannot be combined with other losses")
        return cls(terms=tuple(terms), softcap=softcap, mu_centering=mu_centering)


# ---------------------------------------------------------------- helpers
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise LossConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LossConfigError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise LossConfigError(f"{where}: must be finite, got {value!r}")
    return number


def _weight(value: Any, where: str) -> float:
    number = _number(value, where)
    if number < 0:
        raise LossConfigError(f"{where}: must be >= 0, got {value!r}")
    return number


def _positive(value: Any, where: str) -> float:
    number = _number(value, where)
    if not number > 0:
        raise LossConfigError(f"{where}: must be > 0, got {value!r}")
    return number


def _term(item: Any) -> TermConfig:
    if isinstance(item, TermConfig):
        return item
    if isinstance(item, Mapping):
        unknown = sorted(set(item) - {"name", "weight", "params"})
        if unknown:
            raise LossConfigError(f"loss term: unknown field(s) {', '.join(unknown)} (known: name, weight, params)")
        if "name" not in item:
            raise LossConfigError(f"loss term: missing 'name' in {dict(item)!r}")
        return TermConfig(name=item["name"], weight=item.get("weight"), params=item.get("params") or {})
    raise LossConfigError(f"loss term must be a TermConfig or a mapping, got {item!r}")


def _canonical_name(raw: str) -> str:
    return raw.strip().lower().replace("-", "_")


def _method_parts(method: str) -> list[str]:
    if not isinstance(method, str) or not method.strip():
        raise LossConfigError(f"method must be a non-empty string, got {method!r}")
    parts = [_canonical_name(p) for p in method.split("+")]
    known = (BASELINE, *METHOD_PARTS)
    for p in parts:
        if p not in known:
            raise LossConfigError(f"method {method!r}: unknown part {p!r}; known: {', '.join(known)}")
    if len(set(parts)) != len(parts):
        raise LossConfigError(f"method {method!r}: a part is given twice")
    if BASELINE in parts and len(parts) > 1:
        raise LossConfigError(f"method {method!r}: baseline cannot be combined with other parts")
    return [p for p in parts if p != BASELINE]


def _flat_names() -> set[str]:
    names = {f"{SOFTCAP}_cap"}
    for name, spec in TERMS.items():
        names.add(f"{name}_weight")
        names.update(f"{name}_{p.name}" for p in spec.params)
    return names


def _check_flat_names(params: Mapping[str, Any]) -> None:
    known = _flat_names()
    prefixes = tuple(f"{p}_" for p in METHOD_PARTS)
    for key in params:
        if key not in known and isinstance(key, str) and key.startswith(prefixes):
            raise LossConfigError(f"unknown loss parameter {key!r}; known: {', '.join(sorted(known))}")


def _parse_cli_item(arg: str) -> tuple[str, str | None, dict[str, str]]:
    """``"simreg=0.1,temperature=0.1"`` -> ``("simreg", "0.1", {"temperature": "0.1"})``."""
    if not isinstance(arg, str) or not arg.strip():
        raise LossConfigError(f"--loss needs NAME[=VALUE][,key=value], got {arg!r}")
    head, *rest = [piece.strip() for piece in arg.split(",")]
    name, sep, value = head.partition("=")
    name = _canonical_name(name)
    known = (BASELINE, *METHOD_PARTS)
    if name not in known:
        raise LossConfigError(f"--loss {arg!r}: unknown loss {name!r}; known: {', '.join(known)}")
    if sep and not value.strip():
        raise LossConfigError(f"--loss {arg!r}: empty value after '='")
    options: dict[str, str] = {}
    for piece in rest:
        key, eq, val = piece.partition("=")
        key = key.strip()
        if not eq or not key or not val.strip():
            raise LossConfigError(f"--loss {arg!r}: expected key=value after the name, got {piece!r}")
        if key in options:
            raise LossConfigError(f"--loss {arg!r}: {key} is given twice")
        options[key] = val.strip()
    return name, (value.strip() if sep else None), options
