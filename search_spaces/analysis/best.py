"""The best trial of a sweep, overall and per method, under the sweep-dir contract's rule
(:data:`search_spaces.run.sweep_dir.BEST_RULE`, the rule ``progress.json`` and ``/best-config`` use too)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from search_spaces.analysis.trial_frame import normalize_trials, sort_methods
from search_spaces.run.sweep_dir import BEST_RULE, best_key, best_record


def _ranked(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that may be the best, best first (sweep_dir.BEST_RULE, the rule progress.json and the
    service's /best-config use too)."""
    keys = [best_key(r) for r in trials.to_dict("records")]
    order = sorted((k, i) for i, k in enumerate(keys) if k is not None)
    return trials.iloc[[i for _, i in order]]


def best_configs(trials: pd.DataFrame) -> dict[str, Any]:
    """The best trial overall and per method under :data:`BEST_RULE`; says what is missing."""
    trials = normalize_trials(trials)
    ranked = _ranked(trials)
    out: dict[str, Any] = {"rule": BEST_RULE, "overall": None, "per_method": {}, "missing": []}
    if ranked.empty:
        out["missing"].append(
            "no best configuration yet: no trial has a validation CE outside DIVERGED/ERROR trials"
            if len(trials)
            else "no best configuration: the sweep has no trials yet"
        )
        return out
    out["overall"] = best_record(ranked.iloc[0].to_dict())
    for method in sort_methods(str(m) for m in trials["method"].dropna().unique()):
        of_method = ranked[ranked["method"] == method]
        if of_method.empty:
            out["missing"].append(
                f"{method}: no trial with a validation CE yet (diverged, failed, pending or not yet evaluated)"
            )
            continue
        out["per_method"][str(method)] = best_record(of_method.iloc[0].to_dict())
    return out
