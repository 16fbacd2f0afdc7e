"""The model size as an axis of a sweep: which sizes a trials table holds, and the analysis of each size
on its own.

A sweep whose spec lists several model presets gives its trials a ``model`` column. Every comparison
(a family's LRS, a paired delta against the baseline, a confirmed configuration) holds within one size:
the baseline a method is paired with is the baseline at the same size, seed and learning rate. The
analysis functions are written for one size; :func:`per_size` runs one on each size's trials and stacks
the results, labelled with the size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import pandas as pd

from search_spaces.spec.sweep_spec import SIZE_PARAM
from trainables.model.presets import MODEL_PRESETS

P = ParamSpec("P")


def size_order(name: str) -> tuple[int, str]:
    """Presets in the order ``trainables.model.presets`` declares them (smallest first), unknown ones last."""
    known = list(MODEL_PRESETS)
    return (known.index(name) if name in known else len(known), name)


def sizes_of(trials: pd.DataFrame) -> list[str]:
    """The model presets of a trials table, smallest first; empty when the size is no axis of the sweep."""
    if SIZE_PARAM not in trials.columns:
        return []
    return sorted({str(v) for v in trials[SIZE_PARAM].dropna()}, key=size_order)


def of_size(trials: pd.DataFrame, size: str) -> pd.DataFrame:
    """The trials (or metrics rows) of one size."""
    return trials[trials[SIZE_PARAM].astype(str) == size]


def largest(trials: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """``(size, its trials)`` of the largest size; ``(None, trials)`` when the size is no axis."""
    names = sizes_of(trials)
    if len(names) < 2:
        return None, trials
    return names[-1], of_size(trials, names[-1])


def size_label(size: str, label: str) -> str:
    return f"{size} · {label}"


def per_size(fn: Callable[P, pd.DataFrame]) -> Callable[P, pd.DataFrame]:
    """``fn(trials, ...)`` on each size's trials, stacked, smallest size first: a ``model`` column in
    front, and each ``label`` prefixed with the size. A sweep of one size gets ``fn`` unchanged."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> pd.DataFrame:
        trials, rest = args[0], args[1:]
        assert isinstance(trials, pd.DataFrame)
        names = sizes_of(trials)
        if len(names) < 2:
            return fn(*args, **kwargs)
        frames = []
        for size in names:
            out = fn(of_size(trials, size), *rest, **kwargs).copy()  # type: ignore[arg-type]
            out.insert(0, SIZE_PARAM, size)
            if "label" in out.columns:
                out["label"] = [size_label(size, str(v)) for v in out["label"]]
            frames.append(out)
        filled = [f for f in frames if not f.empty]
        return pd.concat(filled, ignore_index=True) if filled else frames[0]

    return wrapper

