"""The trial table as the analysis reads it (``trials.parquet``, docs/sweep-dir.md) and the two
quantities every table is measured in: the loss of a uniform predictor ``L0 = ln V`` and the LR
sensitivity of one family of runs (definitions in :mod:`search_spaces.analysis.sensitivity`).

Pure and torch-free, like the analysis: the statistics, the paper's reference tables and the report
build on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from search_spaces.run.sweep_dir import CONFIRM_STAGE, TrialStatus, finite_float, stage_of
from search_spaces.run.sweep_dir import TRIAL_STATUSES as STATUSES
from search_spaces.spec.sweep_spec import SIZE_PARAM
from trainables.losses.registry import COEFFICIENTS, method_rank

# Trials whose final validation CE is the end of their full budget: the only ones LRS may compare.
FINISHED: tuple[str, ...] = (TrialStatus.TERMINATED.value, TrialStatus.DIVERGED.value)


def uniform_loss(vocab_size: int) -> float:
    """``L0 = ln V``: the cross entropy of a uniform predictor over ``V`` tokens."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    return math.log(vocab_size)


def lr_sensitivity_value(losses: Sequence[float], l0: float) -> float:
    """LRS of one family from its final losses at K learning rates (NaN/inf and diverged ⇒ ``l0``)."""
    if len(losses) < 2:
        raise ValueError(f"LR sensitivity needs at least 2 learning rates, got {len(losses)}")
    capped = [l0 if not math.isfinite(v) else min(float(v), l0) for v in losses]
    best = min(capped)
    return sum(v - best for v in capped) / (len(capped) - 1)


def float_key(value: float) -> float:
    """A grouping key for floats written by different code paths (1e-3 vs 0.0010000000000000002)."""
    return float(f"{float(value):.9g}")



_REQUIRED_COLUMNS: dict[str, str] = {
    "trial_id": "object",
    "method": "object",
    "lr": "float64",
    "seed": "float64",
    "status": "object",
    "final_val_loss": "float64",
    "best_val_loss": "float64",
    "best_step": "float64",
    "steps": "float64",
    "tokens": "float64",
    "wall_time_s": "float64",
    "diverged_step": "float64",
    "diverged_cause": "object",
    "above_l0_step": "float64",
    "l0": "float64",
    "vocab_size": "float64",
    "test_ce": "float64",
    "test_ce_se": "float64",
    "stage": "object",
}


def normalize_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with every column the analysis reads (absent ones null), so an empty or partial
    ``trials.parquet`` (a sweep that just started) analyses to empty tables instead of a KeyError."""
    missing = [c for c in _REQUIRED_COLUMNS if c not in trials.columns]
    if not missing:
        return trials
    out = trials.copy()
    for column in missing:
        out[column] = pd.Series([None] * len(out), index=out.index, dtype=_REQUIRED_COLUMNS[column])
    return out


def search_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of the search stage (all of them in a sweep without a confirm stage)."""
    if "stage" not in trials.columns:
        return trials
    return trials[[stage_of(r) != CONFIRM_STAGE for r in trials.to_dict("records")]]


def confirm_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of the confirm stage (none in a sweep without one)."""
    if "stage" not in trials.columns:
        return trials.iloc[0:0]
    return trials[[stage_of(r) == CONFIRM_STAGE for r in trials.to_dict("records")]]


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """The model preset where the size is an axis, then the documented coefficient columns present in
    ``trials`` (``lr`` and ``seed`` are handled apart).

    Other columns are never taken as hyperparameters: bookkeeping the driver adds (a node id, a
    checkpoint path) would otherwise split families that differ only in where they ran."""
    return [c for c in (SIZE_PARAM, *COEFFICIENTS) if c in trials.columns]


def trial_params(row: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """The non-null hyperparameters of one trial (``lr`` first), JSON-ready."""
    out: dict[str, Any] = {"lr": finite_float(row.get("lr"))}
    for column in columns:
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        out[column] = value
    return out


def format_coefficients(coefficients: Mapping[str, Any]) -> str:
    """``mu_loss_weight=0.0001`` style label; ``-`` when the method has none."""
    if not coefficients:
        return "-"
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in coefficients.items())


def family_coefficients(row: Mapping[str, Any], columns: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """A family's coefficients: the trial's hyperparameters but the learning rate and the size (families
    are formed within one size: ``analysis.sizes``)."""
    params = trial_params(row, columns)
    params.pop("lr", None)
    params.pop(SIZE_PARAM, None)
    return tuple((k, float_key(v) if isinstance(v, float) else v) for k, v in params.items())


def vocab_size_of(trials: pd.DataFrame) -> int | None:
    if "vocab_size" not in trials.columns:
        return None
    values = pd.to_numeric(trials["vocab_size"], errors="coerce").dropna()
    values = values[values >= 2]
    return int(values.iloc[0]) if len(values) else None


def l0_of(group: pd.DataFrame, fallback: int | None) -> float | None:
    """The family's ``L0``: the mean of what its trials recorded (``ln V``, or each run's measured
    initial loss), else ``ln V`` from the vocabulary (sweeps written before ``l0`` was recorded)."""
    if "l0" in group.columns:
        recorded = pd.to_numeric(group["l0"], errors="coerce").dropna()
        if len(recorded):
            return float(recorded.mean())
    vocab = vocab_size_of(group) or fallback
    return uniform_loss(vocab) if vocab else None


def sweep_l0(trials: pd.DataFrame) -> float | None:
    """``L0`` of a whole sweep (``l0_of`` over every trial); None when unknown."""
    return l0_of(normalize_trials(trials), vocab_size_of(trials)) if len(trials) else None


def seed_of(row: Mapping[str, Any]) -> int:
    value = row.get("seed")
    return -1 if value is None or pd.isna(value) else int(value)


MEASURE_RULE = (
    "measured loss of a trial = its final test CE (test split, evaluated once at the end) when it has one, "
    "else its final validation CE"
)


def measured_loss(row: Mapping[str, Any]) -> float | None:
    """The loss every table and comparison measures a trial by (:data:`MEASURE_RULE`)."""
    test = finite_float(row.get("test_ce"))
    return test if test is not None else finite_float(row.get("final_val_loss"))


def measured_source(trials: pd.DataFrame) -> str:
    """What the measured losses of ``trials`` are: ``test CE``, ``validation CE`` or ``test CE where measured,
    else validation CE`` (for the captions of tables and plots)."""
    if "test_ce" not in trials.columns or not len(trials):
        return "validation CE"
    has_test = pd.to_numeric(trials["test_ce"], errors="coerce").notna()
    if has_test.all():
        return "test CE"
    return "test CE where measured, else validation CE" if has_test.any() else "validation CE"


def capped_final(row: Mapping[str, Any], l0: float) -> float:
    """The measured loss capped at ``l0``; a DIVERGED trial counts as ``l0``."""
    if row.get("status") == "DIVERGED":
        return l0
    value = measured_loss(row)
    return l0 if value is None else min(value, l0)


def method_order(method: str) -> int:
    """Baseline first, then the loss registry's order, then combinations and anything else."""
    return method_rank(method)


def sort_methods(methods: Iterable[str]) -> list[str]:
    return sorted(set(methods), key=lambda m: (method_order(m), m))


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials per status, every documented status present (0 when none)."""
    counts = trials["status"].value_counts() if "status" in trials.columns else pd.Series(dtype=int)
    out = {s: int(counts.get(s, 0)) for s in STATUSES}
    for other in sorted(set(counts.index) - set(STATUSES)):
        out[str(other)] = int(counts[other])
    return out


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN → None, numpy scalars → Python."""
    return [{k: to_json_value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def to_json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value
