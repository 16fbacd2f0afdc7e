"""LossConfig: cross entropy plus any set of registered loss terms (``trainables.losses.registry``).

Torch-free (the service and the sweep spec import it). A training run's objective is

    total = CE + Σ_penalties weight · penalty       (logit transforms applied by the head first,
                                                     after-step hooks run after each optimizer step)

Three ways in, one canonical form out:

- ``LossConfig.from_method("simreg+mu_centering", {"simreg_weight": 0.1})`` — a sweep trial: a method
  name (``baseline`` or ``+``-joined term names) and the flat coefficients ``<term>_<coefficient>``
  (``registry.COEFFICIENTS``; bool and int settings such as ``simreg_causal`` too); missing ones take
  the registry's defaults.
- ``LossConfig.from_cli(["z_loss=1e-4", "softcap=30"])`` — repeated ``--loss NAME[=VALUE][,key=value]``.
- ``LossConfig.from_dict(config.to_dict())`` — JSON round trip (manifests, Tune configs, Ray Jobs).

Terms are kept in registry order with every default filled in, so equal objectives give equal configs
(and config hashes) however they were written. ``method`` gives the canonical name back.

``softcap`` and ``mu_centering`` are also fields of ``LossConfig`` and keys of ``to_dict``: manifests
and config hashes written before every kind of term was a ``TermConfig`` stay readable and equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainables.losses.registry import BASELINE, TERMS, get_term
from trainables.losses.term import Coefficient, Term

SOFTCAP = "softcap"
MU_CENTERING = "mu_centering"
_LEGACY_FIELDS = (SOFTCAP, MU_CENTERING)  # terms that to_dict writes as fields of their own


class LossConfigError(ValueError):
    """An invalid loss configuration; the message names the field and the problem."""


def _get(name: str) -> Term:
    try:
        return get_term(name)
    except ValueError as e:
        raise LossConfigError(str(e)) from None


@dataclass(frozen=True, kw_only=True)
class TermConfig:
    """One registered term: ``name``, ``weight`` (penalties only: >= 0, None = the default) and
    ``params`` (its other coefficients, validated against the registry; defaults filled in)."""

    name: str
    weight: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        term = _get(self.name)
        weight: float | None = None
        if term.weight is not None:
            raw = term.weight.default if self.weight is None else self.weight
            weight = float(_coerce(term.weight, raw, f"loss term {self.name!r}: weight"))
        elif self.weight is not None:
            raise LossConfigError(f"loss term {self.name!r} is a {term.kind.replace('_', ' ')}: it has no weight")
        if not isinstance(self.params, Mapping):
            raise LossConfigError(f"loss term {self.name!r}: params must be a mapping, got {self.params!r}")
        for key in self.params:
            try:
                term.param(key)
            except ValueError as e:
                raise LossConfigError(str(e)) from None
        params: dict[str, Any] = {}
        for p in term.params:  # registry order, so equal configs serialise identically
            if p.name in self.params and self.params[p.name] is not None:
                params[p.name] = _coerce(p, self.params[p.name], f"loss term {self.name!r}: {p.name}")
            elif p.default is not None:
                params[p.name] = p.default
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "params", params)

    @property
    def term(self) -> Term:
        return get_term(self.name)

    def __hash__(self) -> int:  # params is a dict: hash its items so configs can be set members / keys
        return hash((self.name, self.weight, tuple(sorted(self.params.items()))))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "params": dict(self.params)}

    def describe(self) -> str:
        values = [f"weight={self.weight:g}"] if self.weight is not None else []
        values += [f"{k}={_fmt(v)}" for k, v in self.params.items()]
        return f"{self.name}({', '.join(values)})" if values else self.name


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """The objective of one run: CE plus the configured terms of every kind. Baseline = defaults.

    ``softcap`` (the cap) and ``mu_centering`` mirror the terms of those names: give either form."""

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
        if self.softcap is not None:
            cap = _coerce(get_term(SOFTCAP).param("cap"), self.softcap, "loss.softcap (the logit cap)")
            given = next((t for t in terms if t.name == SOFTCAP), None)
            if given is None:
                terms.append(TermConfig(name=SOFTCAP, params={"cap": cap}))
            elif given.params["cap"] != cap:
                raise LossConfigError(f"loss.softcap={cap:g} disagrees with the softcap term's cap")
        if not isinstance(self.mu_centering, bool):
            raise LossConfigError(f"loss.mu_centering must be true or false, got {self.mu_centering!r}")
        if self.mu_centering and MU_CENTERING not in seen:
            terms.append(TermConfig(name=MU_CENTERING))
        order = list(TERMS)
        terms.sort(key=lambda t: order.index(t.name))
        by_name = {t.name: t for t in terms}
        object.__setattr__(self, "terms", tuple(terms))
        object.__setattr__(self, "softcap", by_name[SOFTCAP].params["cap"] if SOFTCAP in by_name else None)
        object.__setattr__(self, "mu_centering", MU_CENTERING in by_name)

    # ------------------------------------------------------------------ views
    @property
    def method(self) -> str:
        """Canonical method name: the term names in registry order joined by ``+``; ``baseline`` if none."""
        return "+".join(t.name for t in self.terms) or BASELINE

    def term(self, name: str) -> TermConfig | None:
        return next((t for t in self.terms if t.name == name), None)

    def of_kind(self, kind: str) -> tuple[TermConfig, ...]:
        """The configured terms of one kind (``penalty``, ``logit_transform``, ``after_step``), in order."""
        return tuple(t for t in self.terms if t.term.kind == kind)

    def check_head(self, *, tied: bool) -> None:
        """A ``LossConfigError`` when the model's LM head is tied to its input embedding and a configured
        term needs an output matrix of its own (``Term.separate_head``); callers name their field."""
        needy = [t.name for t in self.terms if t.term.separate_head]
        if tied and needy:
            raise LossConfigError(
                f"loss term {needy[0]!r} needs a separate output matrix and cannot train a model with "
                "tie_weights: untie the head or drop the term"
            )

    def describe(self) -> str:
        """Human-readable, e.g. ``simreg(weight=0.1, temperature=0.1, causal=false, normalize=true)+mu_centering``."""
        return "+".join(t.describe() for t in self.terms) or BASELINE

    # ---------------------------------------------------------- round trip
    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": [t.to_dict() for t in self.terms if t.name not in _LEGACY_FIELDS],
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
        """A config from a method name (``baseline``, a term name or a ``+`` join such as
        ``simreg+mu_centering``) and flat coefficients ``<term>_<coefficient>``. Missing or None values
        take defaults; coefficients of terms the method does not contain are ignored (a sweep passes
        all of them); an unknown ``<term>_...`` name is an error. Keys that belong to no term (``lr``,
        ``seed``, ...) are ignored."""
        params = dict(params or {})
        parts = _method_parts(method)
        _check_flat_names(params)
        terms: list[TermConfig] = []
        for name in parts:
            term = TERMS[name]
            values = {c.name: params.get(term.flat_name(c.name)) for c in term.coefficients}
            weight = values.pop("weight", None) if term.weight is not None else None
            terms.append(
                TermConfig(name=name, weight=weight, params={k: v for k, v in values.items() if v is not None})
            )
        return cls(terms=tuple(terms))

    @classmethod
    def from_cli(cls, args: Sequence[str]) -> LossConfig:
        """A config from repeated ``--loss NAME[=VALUE][,key=value...]`` strings.

        VALUE is the term's first coefficient (a penalty's weight, soft-capping's cap; the registry's
        default when left out), keys are its coefficients (``simreg=0.1,temperature=0.1,causal=true``);
        a term without coefficients (``mu_centering``) takes no value; ``baseline`` alone or no
        argument: plain CE.
        """
        if isinstance(args, str):
            args = [args]
        terms: list[TermConfig] = []
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
                continue
            term = TERMS[name]
            if value is not None:
                if not term.coefficients:
                    raise LossConfigError(f"{where}: {name} takes no value (it has no coefficient)")
                first = term.coefficients[0].name
                if first in options:
                    raise LossConfigError(f"{where}: the {first} is given twice")
                options[first] = value
            weight = options.pop("weight", None) if term.weight is not None else None
            try:
                terms.append(TermConfig(name=name, weight=weight, params=options))
            except LossConfigError as e:
                raise LossConfigError(f"{where}: {e}") from None
        if BASELINE in seen and len(seen) > 1:
            raise LossConfigError("--loss baseline cannot be combined with other losses")
        return cls(terms=tuple(terms))


# ---------------------------------------------------------------- helpers
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _coerce(coefficient: Coefficient, value: Any, where: str) -> Any:
    try:
        return coefficient.coerce(value, where)
    except ValueError as e:
        raise LossConfigError(str(e)) from None


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
    known = (BASELINE, *TERMS)
    for p in parts:
        if p not in known:
            raise LossConfigError(f"method {method!r}: unknown part {p!r}; known: {', '.join(known)}")
    if len(set(parts)) != len(parts):
        raise LossConfigError(f"method {method!r}: a part is given twice")
    if BASELINE in parts and len(parts) > 1:
        raise LossConfigError(f"method {method!r}: baseline cannot be combined with other parts")
    return [p for p in parts if p != BASELINE]


def _flat_names() -> set[str]:
    """Every coefficient's flat name, settings (bool, int) included."""
    return {t.flat_name(c.name) for t in TERMS.values() for c in t.coefficients}


def _check_flat_names(params: Mapping[str, Any]) -> None:
    known = _flat_names()
    prefixes = tuple(f"{name}_" for name in TERMS)
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
    known = (BASELINE, *TERMS)
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
