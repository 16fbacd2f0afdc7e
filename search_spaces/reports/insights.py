"""Two views of a sweep beyond its best configuration, for the report and the web page:

- :func:`param_importance`: which hyperparameters the objective depends on, by Optuna's importance
  evaluators run on the sweep's trials (whatever search produced them, grid and random included);
- :func:`mechanism_vs_lr`: the OEC mechanism at every learning rate, i.e. each trial's final ‖μ‖, mean
  logit, max |logit| and mean log Z against its peak LR (the best trials sit at moderate learning rates
  where nothing happens; the paper's story is at the large ones).

Both are plain data (JSON-ready), deterministic for a given sweep directory.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd

from search_spaces.analysis import trial_frame
from search_spaces.reports.plots import DIAGNOSTICS, method_color
from search_spaces.run.sweep_dir import TrialStatus, finite_float
from search_spaces.spec.sweep_spec import SIZE_PARAM

OBJECTIVE = "final validation CE (no penalty) of finished trials, a diverged trial counted as ln V"
_MIN_TRIALS = 3
_SEED = 0  # fixed: the report depends on the sweep dir alone


def _objective_rows(trials: pd.DataFrame, l0: float) -> list[dict[str, Any]]:
    finished = trials[trials["status"].isin(trial_frame.FINISHED)]
    rows = []
    for row in finished.to_dict("records"):
        value = trial_frame.capped_final(row, l0)
        if math.isfinite(value):
            rows.append({**row, "_objective": value})
    return rows


def _varying(rows: list[dict[str, Any]], column: str) -> list[Any] | None:
    """The values of ``column`` over ``rows`` when every row has one and they are not all equal."""
    values = [r.get(column) for r in rows]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return values if len({str(v) for v in values}) > 1 else None


def _importances(rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """Optuna's importances of ``columns`` for the objective of ``rows``: ``([{param, importance}], why_not)``."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if len(rows) < _MIN_TRIALS:
        return [], f"{len(rows)} finished trial(s); importance needs at least {_MIN_TRIALS}"
    distributions: dict[str, Any] = {}
    for column in columns:
        values = _varying(rows, column)
        if values is None:
            continue
        numeric = [float(v) for v in values] if column not in ("method", "seed", SIZE_PARAM) else None
        if numeric is not None:
            positive = min(numeric) > 0
            distributions[column] = FloatDistribution(min(numeric), max(numeric), log=positive)
        else:
            distributions[column] = CategoricalDistribution(sorted({str(v) for v in values}))
    if not distributions:
        return [], "no hyperparameter took more than one value in every finished trial"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "a new study created" line per report
    try:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=_SEED))
        for row in rows:
            params = {
                k: (str(row[k]) if isinstance(d, CategoricalDistribution) else float(row[k]))
                for k, d in distributions.items()
            }
            trial = optuna.trial.create_trial(params=params, distributions=distributions, value=row["_objective"])
            study.add_trial(trial)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small-sample warnings: the caption says how many trials there were
            found = optuna.importance.get_param_importances(study, evaluator=_evaluator(len(rows)), normalize=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    ranked = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"param": k, "importance": round(float(v), 6)} for k, v in ranked], None


def _evaluator(n_trials: int = 0) -> Any:
    """PED-ANOVA (needs no scikit-learn, unlike fANOVA): how much each hyperparameter matters for reaching the
    best 10 % of the trials. With few trials 10 % is one trial, whose every value then looks decisive, so
    the top set holds at least :data:`_MIN_TRIALS` trials (at most half of them)."""
    from optuna.importance import PedAnovaImportanceEvaluator

    quantile = 0.1 if n_trials <= 0 else min(0.5, max(0.1, _MIN_TRIALS / n_trials))
    return PedAnovaImportanceEvaluator(target_quantile=quantile)


def evaluator_name() -> str:
    return type(_evaluator()).__name__


def param_importance(trials: pd.DataFrame, l0: float | None) -> dict[str, Any]:
    """Importance of method, learning rate, seed and coefficients for :data:`OBJECTIVE`, over all finished
    trials (only the hyperparameters every one of them has) and within each method (its own coefficients)."""
    out: dict[str, Any] = {
        "objective": OBJECTIVE,
        "evaluator": evaluator_name(),
        "overall": [],
        "per_method": {},
        "n_trials": 0,
        "missing": [],
    }
    if trials.empty or l0 is None:
        out["missing"].append("no hyperparameter importance: no finished trials yet")
        return out
    coefficients = trial_frame.hyperparameter_columns(trials)
    rows = _objective_rows(trials, l0)
    out["n_trials"] = len(rows)
    overall, why = _importances(rows, ["method", "lr", *coefficients, "seed"])
    out["overall"] = overall
    if why:
        out["missing"].append(f"no hyperparameter importance over all trials: {why}")
    for method in trial_frame.sort_methods({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        ranked, _ = _importances(mine, ["lr", *coefficients, "seed"])
        if ranked:
            out["per_method"][method] = {"n_trials": len(mine), "importances": ranked}
    return out


def _last_finite(rows: pd.DataFrame, column: str) -> float | None:
    if column not in rows.columns:
        return None
    values = pd.to_numeric(rows[column], errors="coerce")
    values = values[values.map(lambda v: math.isfinite(v))]
    return float(values.iloc[-1]) if len(values) else None


def mechanism_vs_lr(trials: pd.DataFrame, metrics: pd.DataFrame | None, l0: float | None) -> dict[str, Any]:
    """One row per trial that reported: method, peak LR, seed, status, the objective (capped at ln V) and the
    last finite value of each diagnostic (for a diverged trial: its last report before the blow-up)."""
    keys = [k for k, _ in DIAGNOSTICS]
    methods = trial_frame.sort_methods(set(trials["method"].astype(str))) if len(trials) else []
    colors = {m: method_color(m, index=i) for i, m in enumerate(methods)}
    out: dict[str, Any] = {"metrics": dict(DIAGNOSTICS), "colors": colors, "rows": [], "missing": []}
    if trials.empty or metrics is None or metrics.empty or "trial_id" not in metrics.columns:
        out["missing"].append("no mechanism against the learning rate: metrics.parquet holds no reports yet")
        return out
    order = ["step"] if "step" in metrics.columns else []
    by_trial = {str(k): g.sort_values(order, kind="mergesort") if order else g for k, g in metrics.groupby("trial_id")}
    for row in trials.to_dict("records"):
        reports = by_trial.get(str(row["trial_id"]))
        if reports is None or reports.empty:
            continue
        lr = finite_float(row.get("lr"))
        if lr is None:
            continue
        record: dict[str, Any] = {
            "trial_id": str(row["trial_id"]),
            "method": str(row["method"]),
            "lr": lr,
            "seed": None if pd.isna(row.get("seed")) else int(row["seed"]),
            "status": str(row["status"]),
            "diverged": row["status"] == TrialStatus.DIVERGED,
            "step": _int(_last_finite(reports, "step")),
            "val_loss": trial_frame.capped_final(row, l0) if l0 is not None else finite_float(row["final_val_loss"]),
        }
        record.update({k: _last_finite(reports, k) for k in keys})
        out["rows"].append(record)
    if not any(r[k] is not None for r in out["rows"] for k in keys):
        out["missing"].append("no mechanism against the learning rate: the trials reported no logit statistics")
    return out


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def mechanism_methods(section: Mapping[str, Any]) -> list[str]:
    return trial_frame.sort_methods({r["method"] for r in section["rows"]})
