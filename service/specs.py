"""Turning a submission (a full SweepSpec, or a preset name with overrides) into a validated spec,
with the service's own rules on top of the spec's: the trial limit and the data roots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.errors import ApiError, error_item, validation_error
from service.schemas import PresetSubmission
from service.settings import Settings

CORPUS_SCHEMES = ("text:", "parquet:")


def resolve_submission(body: Any, settings: Settings) -> tuple[Any, str | None]:
    """``(SweepSpec, preset name or None)`` for a request body, or an ``ApiError`` naming the field."""
    from search_spaces.presets import apply_overrides, get_preset, list_presets
    from search_spaces.spec import SweepSpec

    if isinstance(body, bytes | str):
        raise ApiError(422, "the body must be JSON (Content-Type: application/json)", loc=("body",))
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object: a SweepSpec or {\"preset\": NAME, \"overrides\": {...}}",
                       loc=("body",))
    preset: str | None = None
    if "preset" in body:
        try:
            submission = PresetSubmission.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        preset = submission.preset
        if preset not in list_presets():
            known = ", ".join(sorted(list_presets()))
            raise ApiError(422, f"unknown preset {preset!r}; known presets: {known}", loc=("body", "preset"))
        try:
            spec = get_preset(preset)
            # applied even when empty: the result is validated as a spec to run (a preset may need overrides)
            spec = apply_overrides(spec, dict(submission.overrides or {}))
            if submission.name:
                spec = apply_overrides(spec, {"name": submission.name})
        except ValidationError as exc:
            raise validation_error(exc, prefix=("body", "overrides")) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ApiError(422, f"invalid overrides: {_msg(exc)}", loc=("body", "overrides")) from exc
    else:
        try:
            # The service's trial limit overrides the spec's own max_trials (a body cannot raise it).
            spec = SweepSpec.model_validate(body, context={"max_trials": settings.max_trials_per_sweep})
        except ValidationError as exc:
            raise validation_error(exc) from exc
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            raise ApiError(422, f"invalid sweep spec: {_msg(exc)}", loc=("body",)) from exc
    return spec, preset


def count_trials(spec: Any, settings: Settings) -> int | None:
    try:
        n = spec.num_trials()
    except Exception as exc:  # a spec the counting code cannot handle is a bad spec, not a server error
        raise ApiError(422, f"cannot count the sweep's trials: {_msg(exc)}", loc=("body",)) from exc
    if n is not None and n > settings.max_trials_per_sweep:
        raise ApiError(
            422,
            f"the sweep has {n} trials; the limit is {settings.max_trials_per_sweep} per sweep "
            "(LOSSWEEP_MAX_TRIALS_PER_SWEEP)",
            loc=("body",),
            code="too_many_trials",
        )
    return n


def check_data_paths(spec_dict: dict[str, Any], settings: Settings) -> None:
    """Refuses ``text:PATH``/``parquet:PATH`` corpora outside the configured data roots. Paths are
    resolved (symlinks, ``..``) before the check, so traversal out of a root is refused too."""
    roots = settings.resolved_data_roots
    errors = []
    for loc, value in _strings(spec_dict, ("body",)):
        scheme = next((s for s in CORPUS_SCHEMES if value.startswith(s)), None)
        if scheme is None:
            continue
        path = value[len(scheme) :]
        if not _inside_roots(path, roots):
            errors.append(error_item(loc, f"{value!r} is outside the allowed data roots ({', '.join(roots)}); "
                                          "set LOSSWEEP_DATA_ROOTS to allow it"))
    if errors:
        raise ApiError(422, errors[0]["field"] + ": " + errors[0]["message"], errors=errors, code="data_path_refused")


def _strings(obj: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(obj, str):
        yield loc, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, (*loc, str(k)))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _strings(v, (*loc, i))


def _inside_roots(path: str, roots: list[str]) -> bool:
    if not path or "\x00" in path:
        return False
    if "://" in path:  # remote corpora: a plain prefix match on a normalised URI, no '..' segments
        if any(seg in ("..", ".") for seg in path.split("://", 1)[1].split("/")):
            return False
        return any("://" in r and (path == r.rstrip("/") or path.startswith(r.rstrip("/") + "/")) for r in roots)
    try:
        real = Path(os.path.realpath(os.path.expanduser(path)))
    except (OSError, ValueError):
        return False
    for root in roots:
        if "://" in root:
            continue
        real_root = Path(os.path.realpath(os.path.expanduser(root)))
        if real == real_root or real_root in real.parents:
            return True
    return False


def _msg(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
