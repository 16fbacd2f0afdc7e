"""Turning a submission (a full SweepSpec, or a preset name with overrides) into a validated spec,
with the service's own rules on top of the spec's: the trial limit, and the sweep layer's admission
under the service's data roots."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import ValidationError

from search_spaces.spec.admission import Admission, AdmissionContext, AdmissionRefused, admit
from service.errors import ApiError, error_item, validation_error
from service.schemas import PresetSubmission
from service.settings import Settings

#: Deepest nesting a submission may have (the deepest spec is ~4 levels; free-form maps add a few).
MAX_DEPTH = 32
#: Largest integer anywhere in a submission: what a 64-bit signed column, Arrow and Ray hold.
MAX_INT = 2**63 - 1


def check_document(doc: Any, root: tuple[str | int, ...] = ("body",)) -> None:
    """Refuses, naming the field, what could be validated but not stored and served back: numbers that
    are not finite or do not fit 64 bits, text that is not valid Unicode (a lone surrogate), nesting
    deeper than ``MAX_DEPTH``. Iterative, so a deeply nested body cannot exhaust the stack here."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [(root, doc)]
    while stack:
        loc, value = stack.pop()
        if len(loc) - len(root) > MAX_DEPTH:
            raise ApiError(422, f"{'.'.join(map(str, loc[:len(root) + 3]))}...: nested deeper than {MAX_DEPTH} levels",
                           loc=loc[: len(root) + MAX_DEPTH])
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ApiError(422, f"{'.'.join(map(str, loc))}: {value} is not a finite number", loc=loc)
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise ApiError(422, f"{'.'.join(map(str, loc))}: the number is too large (limit {MAX_INT})", loc=loc)
        if isinstance(value, str):
            _check_text(value, loc)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(str(key), loc)
                stack.append(((*loc, str(key)), item))
        elif isinstance(value, list | tuple):
            stack.extend(((*loc, i), item) for i, item in enumerate(value))


def _check_text(text: str, loc: tuple[str | int, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, f"{'.'.join(map(str, loc))}: the text is not valid Unicode (a lone surrogate?)",
                       loc=loc) from None
    if "\x00" in text:
        raise ApiError(422, f"{'.'.join(map(str, loc))}: the text contains a NUL character", loc=loc)


def resolve_submission(body: Any, settings: Settings) -> tuple[Any, str | None]:
    """``(SweepSpec, preset name or None)`` for a request body, or an ``ApiError`` naming the field."""
    from search_spaces.spec.presets import apply_overrides, get_preset, list_presets
    from search_spaces.spec.sweep_spec import SweepSpec

    if isinstance(body, bytes | str):
        raise ApiError(422, "the body must be JSON (Content-Type: application/json)", loc=("body",))
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object: a SweepSpec or {\"preset\": NAME, \"overrides\": {...}}",
                       loc=("body",))
    check_document(body)
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
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, RecursionError) as exc:
            raise ApiError(422, f"invalid overrides: {_msg(exc)}", loc=("body", "overrides")) from exc
    else:
        try:
            # The service's trial limit overrides the spec's own max_trials (a body cannot raise it).
            spec = SweepSpec.model_validate(body, context={"max_trials": settings.max_trials_per_sweep})
        except ValidationError as exc:
            raise validation_error(exc) from exc
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, RecursionError) as exc:
            raise ApiError(422, f"invalid sweep spec: {_msg(exc)}", loc=("body",)) from exc
    if settings.tracking is not None and not _names_tracking(body):
        spec = spec.model_copy(update={"tracking": settings.tracking})
    return spec, preset


def _names_tracking(body: dict[str, Any]) -> bool:
    """Whether a submission sets the spec's tracking section itself (else the service's default applies)."""
    overrides = body.get("overrides") if "preset" in body else None
    if isinstance(overrides, dict):
        return any(str(key).split(".")[0] == "tracking" for key in overrides)
    return "tracking" in body


def storable(spec: Any) -> dict[str, Any]:
    """The validated spec as the document that is stored and served back, checked to be exactly that:
    strict JSON (no NaN), valid Unicode, no number a reader cannot hold."""
    try:
        doc = spec.model_dump(mode="json")
        check_document(doc)
        json.dumps(doc, allow_nan=False).encode("utf-8")
    except ApiError:
        raise
    except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        raise ApiError(422, f"the sweep spec cannot be stored as JSON: {_msg(exc)}", loc=("body",)) from exc
    return doc  # type: ignore[no-any-return]


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


def admit_spec(spec: Any, settings: Settings) -> Admission:
    """The sweep layer's admission of ``spec`` under this service's data roots, its refusals as a 422
    naming each field."""
    try:
        return admit(spec, AdmissionContext(data_roots=settings.resolved_data_roots))
    except AdmissionRefused as exc:
        errors = [error_item(("body", *loc), message) for loc, message in exc.problems]
        raise ApiError(422, errors[0]["field"] + ": " + errors[0]["message"], errors=errors, code=exc.code) from None


def _msg(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
