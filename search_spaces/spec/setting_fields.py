"""The sweep spec's fields that are run settings, built from their one declaration (the config
dataclasses' ``setting`` metadata, ``trainables.train.settings``): a setting declared with
``spec="data"`` is a field of the spec's ``data:`` section, with the same name, type, default, range
and help (as the field's description)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from trainables.train.config import TrainConfig
from trainables.train.settings import Setting, in_section, settings_of


def run_settings() -> dict[str, Setting]:
    """Every run setting of ``TrainConfig`` by its dotted path."""
    return {s.path: s for s in settings_of(TrainConfig)}


def spec_field(s: Setting, **overrides: Any) -> tuple[Any, Any]:
    """``(type, FieldInfo)`` of a setting for ``pydantic.create_model`` (``overrides``: of the type or
    default, for a spec field that says more than the setting, e.g. an optional budget)."""
    tp = overrides.pop("type", s.type)
    # a choice-or-number setting (divergence.l0) is checked by its own validator: pydantic would apply the
    # bounds to the choices too
    numeric = {} if s.choices is not None else {"ge": s.info.ge, "gt": s.info.gt, "le": s.info.le}
    extra = {k: v for k, v in numeric.items() if v is not None}
    if any(v is not None for v in numeric.values()):
        extra["allow_inf_nan"] = False
    return tp, Field(overrides.pop("default", s.default), description=s.help, **extra)


def section_fields(section: str) -> dict[str, tuple[Any, Any]]:
    """The fields of the spec's ``section`` ("" = the top level) that are run settings."""
    return {s.name: spec_field(s) for s in in_section(run_settings(), section)}


def section_model(
    name: str, section: str, doc: str, *, module: str, base: type[BaseModel] | None = None
) -> type[BaseModel]:
    """A strict, frozen pydantic model of the settings of ``section``, added to ``base``'s fields.
    ``module`` must hold the model under ``name``: specs are pickled (Optuna's search state holds one)."""
    fields: dict[str, Any] = section_fields(section)
    if base is None:
        fields["__config__"] = ConfigDict(extra="forbid", frozen=True)
    else:
        fields["__base__"] = base
    return create_model(name, __doc__=doc, __module__=module, **fields)  # type: ignore[no-any-return]
