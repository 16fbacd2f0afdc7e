"""The one door through which a service admits a sweep: ``admit(spec, context)`` checks every file the
spec names against the data roots, sizes the trials' model from the real tokenizer file or shard
manifest (the rule the trial itself uses), and returns what the service needs -- the spec, its
footprint and the data paths it names. Nothing is read before its path has passed the roots check, so a
refusal says the same thing whether or not a file exists outside the roots.

Which spec strings name files (``FILE_SCHEMES``) is declared here; the check is made on every string of
the spec but its free-text description, so an option added later that names a file is covered too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from search_spaces.spec.footprint import Footprint, footprint
from search_spaces.spec.sweep_spec import SweepSpec
from trainables.data.roots import ENV as DATA_ROOTS_ENV
from trainables.data.roots import DataRootError, escaping_files, inside_roots, uri_inside_roots
from trainables.data.vocabulary import resolve_vocabulary

#: Prefixes of spec strings that name a local file or folder (or a URI under a remote root).
FILE_SCHEMES = ("text:", "parquet:", "shards:", "hf:")
#: Spec fields that hold free text, never a path.
FREE_TEXT = frozenset({"description", "name"})

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class AdmissionContext:
    """``data_roots``: the directories (or URI prefixes) files may come from."""

    data_roots: Sequence[str]


@dataclass(frozen=True)
class DataPath:
    """A file or folder the spec names: where (``loc``, a path into the spec) and what."""

    loc: Loc
    value: str
    path: str


@dataclass(frozen=True)
class Admission:
    spec: SweepSpec
    footprint: Footprint
    data_paths: tuple[DataPath, ...]


@dataclass
class AdmissionRefused(ValueError):
    """A spec the sweep layer refuses: every problem as ``(loc, message)``; ``code`` names the kind."""

    problems: list[tuple[Loc, str]]
    code: str = "data_path_refused"
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        loc, message = self.problems[0]
        return f"{'.'.join(map(str, loc))}: {message}"


def data_paths(spec: SweepSpec) -> tuple[DataPath, ...]:
    """Every file or folder the spec names (``FILE_SCHEMES``)."""
    doc = spec.model_dump(mode="json")
    found = []
    for loc, value in _strings({k: v for k, v in doc.items() if k not in FREE_TEXT}, ()):
        scheme = next((s for s in FILE_SCHEMES if value.startswith(s)), None)
        if scheme is not None:
            found.append(DataPath(loc=loc, value=value, path=value[len(scheme) :]))
    return tuple(found)


def check_data_paths(paths: Sequence[DataPath], roots: Sequence[str]) -> None:
    """Refuses paths outside ``roots``. Paths are resolved (symlinks, ``..``) before the check, so traversal
    out of a root is refused too, and so is a directory holding a link to a file outside. The job checks
    every file again where it opens it (``trainables.data.roots``): a file swapped for such a link after
    admission is refused there."""
    where = ", ".join(roots)
    problems: list[tuple[Loc, str]] = []
    for item in paths:
        if not path_inside_roots(item.path, roots):
            problems.append((item.loc, f"{item.value!r} is outside the allowed data roots ({where}); "
                                       "set LOSSWEEP_DATA_ROOTS to allow it"))
        elif "://" not in item.path:
            escaping = next(escaping_files(item.path, roots), None)
            if escaping is not None:
                problems.append((item.loc, f"{item.value!r} holds {escaping}, a link outside the allowed data "
                                           f"roots ({where})"))
    if problems:
        raise AdmissionRefused(problems)


def path_inside_roots(path: str, roots: Sequence[str]) -> bool:
    """Local paths resolved against local roots; a remote URI by prefix on its normalised form (no ``..``)."""
    if not path or "\x00" in path:
        return False
    if "://" in path:
        return uri_inside_roots(path, roots)
    return inside_roots(path, roots)


def confinement_env(roots: Sequence[str]) -> dict[str, str]:
    """The environment that confines a sweep's job to the roots it was admitted under: every process of
    the job checks each file again where it opens it."""
    return {DATA_ROOTS_ENV: json.dumps(list(roots))}


def admit(spec: SweepSpec, context: AdmissionContext) -> Admission:
    """The spec's data paths checked against the roots, then its footprint sized from the data's real
    vocabulary; ``AdmissionRefused`` naming the field otherwise."""
    paths = data_paths(spec)
    check_data_paths(paths, context.data_roots)
    try:
        vocabulary = resolve_vocabulary(spec.data.corpus, spec.data.tokenizer, context.data_roots)
    except (ValueError, DataRootError, OSError) as exc:
        loc: Loc = ("data", "corpus") if spec.data.corpus.startswith("shards:") else ("data", "tokenizer")
        raise AdmissionRefused([(loc, _one_line(exc))], code="data_unreadable") from None
    try:
        fp = footprint(spec, vocabulary)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise AdmissionRefused([(("model",), f"cannot size the sweep's trials: {_one_line(exc)}")],
                               code="validation_error") from None
    return Admission(spec=spec, footprint=fp, data_paths=paths)


def _strings(obj: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(obj, str):
        yield loc, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _strings(v, (*loc, str(k)))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _strings(v, (*loc, i))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__
