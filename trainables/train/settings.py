"""Run settings, declared once: a field of a frozen config dataclass whose ``metadata`` comes from
:func:`setting` (help text, bounds, and where the setting appears at the edges).

The config dataclasses (``trainables.train.config``, ``trainables.model.config``) are the only place a
setting's name, type, default, range and help are written. The sweep spec builds its sections from
them (``spec=`` names the section), the command line builds its flags from them (``flag=`` names the
flag), and both check values with the same bounds (:meth:`Setting.problem`)::

    seq_len: int = field(default=128, metadata=setting("Tokens per sequence.", ge=2, spec="data", flag="--seq-len"))

Torch-free: the service and the command line's ``--help`` read settings without loading torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

_KEY = "lossweep_setting"


@dataclass(frozen=True, kw_only=True)
class SettingInfo:
    """What a field's metadata adds to its name, type and default."""

    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    spec: str | None = None  # the sweep spec's section holding it ("" = top level); None = not in a spec
    flag: str | None = None  # the run commands' option ("--seq-len", "--tf32/--no-tf32"); None = no flag


def setting(
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    spec: str | None = None,
    flag: str | None = None,
) -> dict[str, SettingInfo]:
    """A dataclass field's ``metadata`` declaring it a run setting."""
    return {_KEY: SettingInfo(help=help, ge=ge, gt=gt, le=le, spec=spec, flag=flag)}


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One declared setting: ``path`` is its dotted place in ``TrainConfig.to_dict()``."""

    path: str
    type: Any
    default: Any
    info: SettingInfo

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def help(self) -> str:
        return self.info.help

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values of a ``Literal`` type (``None`` stays allowed when the type is optional)."""
        literal = [a for a in _union_args(self.type) if typing.get_origin(a) is Literal]
        return tuple(v for lit in literal for v in typing.get_args(lit)) if literal else None

    @property
    def numeric(self) -> bool:
        """Whether a number is allowed beside the choices (``divergence.l0``: ``ln_v``, ``initial`` or 10.83)."""
        return self.choices is not None and float in _union_args(self.type)

    def coerce(self, value: Any) -> Any:
        """A command line's text as the setting's value: a number where one is allowed beside the choices."""
        if self.numeric and isinstance(value, str) and value not in (self.choices or ()):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @property
    def optional(self) -> bool:
        return type(None) in _union_args(self.type)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused ("must be >= 2, got 1"), or None when it is allowed."""
        if value is None and self.optional:
            return None
        choices = self.choices
        if self.numeric and isinstance(value, int | float) and not isinstance(value, bool):
            choices = None  # a choice or a number (divergence.l0): a number is held to the bounds
        if choices is not None and value not in choices:
            return f"must be one of {', '.join(map(str, choices))}, got {value!r}"
        i = self.info
        if choices is not None:
            return None  # a choice: bounds are for numbers
        if i.ge is not None and not value >= i.ge:
            return f"must be >= {i.ge:g}, got {value}"
        if i.gt is not None and not value > i.gt:
            return f"must be > {i.gt:g}, got {value}"
        if i.le is not None and not value <= i.le:
            return f"must be <= {i.le:g}, got {value}"
        return None


def _union_args(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def own_settings(cls: type) -> Iterator[Setting]:
    """The settings declared directly on the dataclass ``cls`` (paths relative to it)."""
    for s in settings_of(cls):
        if "." not in s.path:
            yield s


def settings_of(cls: type, prefix: str = "") -> Iterator[Setting]:
    """Every setting of ``cls`` and of the dataclasses nested in it, with dotted paths."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        nested = hints[f.name]
        info = f.metadata.get(_KEY)
        if info is not None:
            default = f.default if f.default is not dataclasses.MISSING else None
            yield Setting(path=prefix + f.name, type=nested, default=default, info=info)
        elif dataclasses.is_dataclass(nested) and isinstance(nested, type):
            yield from settings_of(nested, f"{prefix}{f.name}.")


def check(obj: Any, prefix: str = "", *, unchecked: tuple[str, ...] = ()) -> None:
    """Raises ``ValueError("<prefix><name> must be …")`` for the first field of ``obj`` outside its
    declared range or choices (called from the dataclasses' ``__post_init__``)."""
    for s in own_settings(type(obj)):
        if s.name in unchecked:
            continue
        problem = s.problem(getattr(obj, s.name))
        if problem is not None:
            raise ValueError(f"{prefix}{s.name} {problem}")


def in_section(settings: Mapping[str, Setting] | Iterator[Setting], section: str) -> list[Setting]:
    """The settings a sweep spec's ``section`` holds, in declaration order."""
    values = settings.values() if isinstance(settings, Mapping) else settings
    return [s for s in values if s.info.spec == section]


def put(doc: dict[str, Any], path: str, value: Any) -> None:
    """Sets ``doc``'s entry at the dotted ``path`` (a ``TrainConfig.from_dict`` document), making the
    nested mappings it needs."""
    *parents, name = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[name] = value
