"""Convergence speed-up against the baseline (SimReg's "30 % faster" claim, docs/papers.md §2): how many
tokens each method's best trial needs to reach the final validation CE of the best baseline trial,
from the validation curves in ``metrics.parquet``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from search_spaces.analysis import stats
from search_spaces.analysis.best import best_configs
from search_spaces.analysis.trial_frame import (
    float_key,
    hyperparameter_columns,
    normalize_trials,
    seed_of,
    sort_methods,
    trial_params,
)
from search_spaces.run.sweep_dir import ELIGIBLE_FOR_BEST

SPEEDUP_RULE = (
    "tokens the best baseline trial needs to reach its own final validation CE / tokens the method's best "
    "trial needs to reach that value (linear interpolation between evaluations); > 1 means faster"
)
SEED_SPEEDUP_RULE = (
    "per seed: the same ratio between the trials that repeat the best baseline configuration and the "
    "method's best configuration on that seed, the target being that seed's baseline final validation CE; "
    "mean and sample std over the seeds where the method reached it"
)
#: The budget fractions whose baseline loss is a speed-up target.
TARGET_FRACTIONS: tuple[float, ...] = (0.5, 0.75, 1.0)
TARGETS_RULE = (
    "per seed pair (the best baseline and the method's best configuration on one seed) and per target: the "
    "baseline's validation CE at 50%, 75% and 100% of its budget; speed-up = tokens the baseline needs to reach "
    "it / tokens the method needs; a seed whose method never reaches the target is censored at the budget (its "
    "speed-up is at most baseline tokens / budget, counted at that bound, so an interval with censored seeds is "
    "an upper bound); mean and 95% t-interval over the seed pairs"
)

def tokens_to_reach(curve: pd.DataFrame, target: float) -> float | None:
    """Tokens at which a validation curve first reaches ``target`` (≤), linearly interpolated between
    the evaluation before and the first evaluation at or below it; None if it never does."""
    points = curve[["tokens", "val_loss"]].dropna().sort_values("tokens", kind="mergesort")
    prev_t: float | None = None
    prev_v: float | None = None
    for t, v in zip(points["tokens"].astype(float), points["val_loss"].astype(float), strict=True):
        if not math.isfinite(v):
            prev_t, prev_v = None, None
            continue
        if v <= target:
            if prev_t is None or prev_v is None or prev_v == v:
                return float(t)
            return prev_t + (t - prev_t) * (prev_v - target) / (prev_v - v)
        prev_t, prev_v = t, v
    return None


def _val_curve(metrics: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    rows = metrics[metrics["trial_id"] == trial_id]
    if "diverged" in rows.columns:
        rows = rows[pd.to_numeric(rows["diverged"], errors="coerce").fillna(0) == 0]
    return rows[["tokens", "val_loss"]] if {"tokens", "val_loss"} <= set(rows.columns) else rows.iloc[0:0]


def _repeats(trials: pd.DataFrame, record: Mapping[str, Any], columns: Sequence[str]) -> dict[int, str]:
    """Seed → trial id of the trials that run ``record``'s configuration (method, learning rate and
    coefficients) on each seed; the first such trial when a seed has several."""
    def key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted((k, float_key(v) if isinstance(v, float) else v) for k, v in params.items()))

    wanted = key(record["params"])
    out: dict[int, str] = {}
    for row in trials.sort_values("trial_id", kind="mergesort").to_dict("records"):
        if str(row["method"]) != record["method"] or row["status"] not in (*ELIGIBLE_FOR_BEST, "DIVERGED"):
            continue
        if key(trial_params(row, columns)) == wanted:
            out.setdefault(seed_of(row), str(row["trial_id"]))
    return out


def _seed_speedups(
    trials: pd.DataFrame, metrics: pd.DataFrame, base: Mapping[str, Any], rec: Mapping[str, Any]
) -> dict[str, Any]:
    """:data:`SEED_SPEEDUP_RULE` for one method."""
    columns = hyperparameter_columns(trials)
    base_runs, method_runs = _repeats(trials, base, columns), _repeats(trials, rec, columns)
    per_seed: list[dict[str, Any]] = []
    for seed in sorted(set(base_runs) & set(method_runs)):
        base_curve = _val_curve(metrics, base_runs[seed]).dropna()
        if base_curve.empty:
            continue
        target = float(base_curve.sort_values("tokens", kind="mergesort")["val_loss"].iloc[-1])
        base_tokens = tokens_to_reach(base_curve, target)
        curve = _val_curve(metrics, method_runs[seed])
        tokens = tokens_to_reach(curve, target) if not curve.empty else None
        per_seed.append(
            {
                "seed": seed,
                "baseline_trial_id": base_runs[seed],
                "trial_id": method_runs[seed],
                "target_val_loss": target,
                "speedup": (base_tokens / tokens) if tokens and base_tokens else None,
            }
        )
    values = [float(p["speedup"]) for p in per_seed if p["speedup"] is not None]
    return {
        "targets": _targets(metrics, base_runs, method_runs),
        "per_seed": per_seed,
        "seeds_reached": len(values),
        "speedup_mean": float(np.mean(values)) if values else None,
        "speedup_std": float(np.std(values, ddof=1)) if len(values) >= 2 else None,
    }


def _loss_at(curve: pd.DataFrame, tokens: float) -> float:
    ordered = curve.sort_values("tokens", kind="mergesort")
    return float(np.interp(tokens, ordered["tokens"].astype(float), ordered["val_loss"].astype(float)))


def _targets(
    metrics: pd.DataFrame, base_runs: Mapping[int, str], method_runs: Mapping[int, str]
) -> list[dict[str, Any]]:
    """:data:`TARGETS_RULE` for one method."""
    out = []
    for fraction in TARGET_FRACTIONS:
        seeds: list[dict[str, Any]] = []
        for seed in sorted(set(base_runs) & set(method_runs)):
            base_curve = _val_curve(metrics, base_runs[seed]).dropna()
            curve = _val_curve(metrics, method_runs[seed]).dropna()
            if base_curve.empty or curve.empty:
                continue
            budget = float(base_curve["tokens"].max())
            target = _loss_at(base_curve, fraction * budget)
            base_tokens = tokens_to_reach(base_curve, target)
            tokens = tokens_to_reach(curve, target)
            censored = tokens is None
            reached_at = float(curve["tokens"].max()) if censored else tokens
            if not base_tokens or not reached_at:
                continue
            seeds.append({"seed": seed, "target_val_loss": target, "baseline_tokens": base_tokens,
                          "tokens": tokens, "censored": censored, "speedup": base_tokens / reached_at})  # fmt: skip
        interval = stats.t_interval([s["speedup"] for s in seeds])
        out.append(
            {"fraction": fraction, **interval.to_dict(), "censored": sum(s["censored"] for s in seeds),
             "upper_bound": any(s["censored"] for s in seeds), "seeds": seeds}
        )  # fmt: skip
    return out


def convergence_speedup(trials: pd.DataFrame, metrics: pd.DataFrame | None) -> dict[str, Any]:
    """Speed-up of each method's best trial against the best baseline trial (:data:`SPEEDUP_RULE`),
    and over the seeds that repeat both configurations (:data:`SEED_SPEEDUP_RULE`)."""
    trials = normalize_trials(trials)
    out: dict[str, Any] = {
        "rule": SPEEDUP_RULE,
        "seed_rule": SEED_SPEEDUP_RULE,
        "targets_rule": TARGETS_RULE,
        "baseline": None,
        "methods": [],
        "missing": [],
    }
    if metrics is None or metrics.empty or "trial_id" not in metrics.columns:
        out["missing"].append("no metrics.parquet rows: convergence speed-up needs the validation curves")
        return out
    best = best_configs(trials)["per_method"]
    if "baseline" not in best:
        out["missing"].append("no eligible baseline trial: speed-up is measured against the baseline")
        return out
    base = best["baseline"]
    base_curve = _val_curve(metrics, base["trial_id"])
    if base_curve.empty:
        out["missing"].append(f"baseline trial {base['trial_id']} has no validation reports")
        return out
    ordered = base_curve.dropna().sort_values("tokens", kind="mergesort")
    target = float(ordered["val_loss"].iloc[-1])
    base_tokens = tokens_to_reach(base_curve, target)
    out["baseline"] = {"trial_id": base["trial_id"], "target_val_loss": target, "tokens": base_tokens}
    for method in sort_methods(best):
        if method == "baseline":
            continue
        rec = best[method]
        curve = _val_curve(metrics, rec["trial_id"])
        tokens = tokens_to_reach(curve, target) if not curve.empty else None
        final_tokens = float(curve["tokens"].max()) if not curve.empty else None
        out["methods"].append(
            {
                "method": method,
                "trial_id": rec["trial_id"],
                "tokens": tokens,
                "reached": tokens is not None,
                "speedup": (base_tokens / tokens) if tokens and base_tokens else None,
                # When not reached, the speed-up is below base / final tokens: an upper bound to report.
                "speedup_upper_bound": (
                    base_tokens / final_tokens if tokens is None and final_tokens and base_tokens else None
                ),
                **_seed_speedups(trials, metrics, base, rec),
            }
        )
    return out
