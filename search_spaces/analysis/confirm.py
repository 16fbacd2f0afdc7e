"""The confirm stage: which configurations the search hands on, and what their re-runs on fresh seeds say.

After the search, the ``top_k`` best configurations of every method (baseline included), ranked by the
sweep dir's best-trial rule over the search trials, are re-trained on the spec's ``confirm.seeds``, seeds
the search never used. The verdicts and the best configuration come from those re-runs: selection and
measurement never share a seed, so the winner's curse of picking on the same runs does not bias them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from search_spaces.analysis import stats
from search_spaces.analysis.sizes import of_size, size_label, sizes_of
from search_spaces.analysis.trial_frame import (
    FINISHED,
    capped_final,
    confirm_trials,
    float_key,
    format_coefficients,
    hyperparameter_columns,
    normalize_trials,
    search_trials,
    seed_of,
    sort_methods,
    sweep_l0,
    trial_params,
)
from search_spaces.run.sweep_dir import BEST_RULE, CONFIRM_STAGE, SEARCH_STAGE, best_key

SELECTION_RULE = (
    f"per method, the top_k distinct configurations (learning rate and coefficients) of the search stage, "
    f"ranked by the best-trial rule ({BEST_RULE})"
)
CONFIRM_RULE = (
    "each selected configuration re-trained on the confirm seeds (never used by the search); measured loss per "
    "seed with its 95% t-interval; paired difference against the baseline's confirmed configuration (the one "
    "with the lowest mean) on the same seed; the best configuration is the confirmed one with the lowest mean"
)


def config_key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A configuration's identity (method, learning rate, coefficients; not the seed), floats rounded alike."""
    return tuple(
        sorted((k, float_key(v) if isinstance(v, float) else v) for k, v in params.items() if k != "seed")
    )


def _config_of(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    return {"method": str(row["method"]), **trial_params(row, columns)}


def confirm_configurations(trials: pd.DataFrame, methods: Sequence[str], top_k: int) -> list[dict[str, Any]]:
    """:data:`SELECTION_RULE`: ``[{"method": ..., "lr": ..., <coefficients>}, ...]`` in method order; a
    method without an eligible search trial contributes none. Where the size is an axis, each size
    hands on its own (the configurations then carry ``model``), smallest size first."""
    names = sizes_of(trials)
    if len(names) > 1:
        return [c for size in names for c in confirm_configurations(of_size(trials, size), methods, top_k)]
    trials = search_trials(normalize_trials(trials))
    columns = hyperparameter_columns(trials)
    ranked = sorted(
        ((key, row) for row in trials.to_dict("records") if (key := best_key(row)) is not None), key=lambda kr: kr[0]
    )
    out: list[dict[str, Any]] = []
    for method in methods:
        chosen: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
        for _, row in ranked:
            if str(row["method"]) != method:
                continue
            config = _config_of(row, columns)
            chosen.setdefault(config_key(config), config)
            if len(chosen) == top_k:
                break
        out.extend(chosen.values())
    return out


def _label(config: Mapping[str, Any]) -> str:
    coefficients = {k: v for k, v in config.items() if k not in ("method", "lr")}
    text = f"{config['method']} @ lr={config['lr']:.4g}"
    return text if not coefficients else f"{text} ({format_coefficients(coefficients)})"


def confirm_comparison(trials: pd.DataFrame) -> dict[str, Any]:
    """The confirm stage's table (:data:`CONFIRM_RULE`): per configuration its seeds, interval and
    comparison with the baseline; ``best``: the confirmed best configuration. ``configs`` is empty in
    a sweep without a confirm stage. Where the size is an axis, each size is compared with its own
    baseline; ``best`` is then the best confirmed configuration of any size."""
    names = sizes_of(trials)
    if len(names) > 1:
        parts = [(size, confirm_comparison(of_size(trials, size))) for size in names]
        bests = [part["best"] for _, part in parts if part["best"] is not None]
        return {
            **parts[0][1],
            "configs": [c for _, part in parts for c in part["configs"]],
            "best": min(bests, key=lambda r: (r["mean"], r["label"])) if bests else None,
            "missing": [size_label(size, m) for size, part in parts for m in part["missing"]],
        }
    trials = normalize_trials(trials)
    out: dict[str, Any] = {"selection_rule": SELECTION_RULE, "rule": CONFIRM_RULE, "configs": [], "best": None,
                           "missing": []}  # fmt: skip
    confirm = confirm_trials(trials)
    if confirm.empty:
        return out
    l0 = sweep_l0(trials)
    columns = hyperparameter_columns(trials)
    finished = confirm[confirm["status"].isin(FINISHED)]
    groups: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    for row in finished.to_dict("records"):
        config = _config_of(row, columns)
        group = groups.setdefault(config_key(config), {"config": config, "seeds": {}, "trials": {}})
        loss = capped_final(row, l0) if l0 is not None else math.nan
        group["seeds"].setdefault(seed_of(row), loss)
        group["trials"].setdefault(seed_of(row), str(row["trial_id"]))
    if not groups:
        out["missing"].append("the confirm stage has no finished trial yet")
        return out
    entries = []
    for group in groups.values():
        interval = stats.t_interval(list(group["seeds"].values()))
        entries.append({**group, "interval": interval})
    baselines = [e for e in entries if e["config"]["method"] == "baseline"]
    reference = min(baselines, key=lambda e: e["interval"].mean) if baselines else None
    if reference is None:
        out["missing"].append("no confirmed baseline configuration: the comparisons need one")
    order = {m: i for i, m in enumerate(sort_methods(e["config"]["method"] for e in entries))}
    entries.sort(key=lambda e: (order[e["config"]["method"]], e["interval"].mean))
    for e in entries:
        record: dict[str, Any] = {
            "label": _label(e["config"]),
            "method": e["config"]["method"],
            "params": {k: v for k, v in e["config"].items() if k != "method"},
            **e["interval"].to_dict(),
            "seeds": {str(s): v for s, v in sorted(e["seeds"].items())},
            "trial_ids": {str(s): v for s, v in sorted(e["trials"].items())},
            "comparison": None,
        }
        if reference is not None and e is not reference:
            shared = sorted(set(e["seeds"]) & set(reference["seeds"]))
            comparison = stats.paired_difference(
                [e["seeds"][s] for s in shared], [reference["seeds"][s] for s in shared]
            )
            record["comparison"] = {"against": _label(reference["config"]), **comparison.to_dict()}
        out["configs"].append(record)
    best = min(out["configs"], key=lambda r: (r["mean"], r["label"]))
    out["best"] = {k: best[k] for k in ("label", "method", "params", "n", "mean", "sd", "low", "high", "trial_ids")}
    return out


def best_interval(trials: pd.DataFrame, params: Mapping[str, Any], method: str) -> dict[str, Any]:
    """n, mean, SD and t-interval of the measured loss over the seeds that ran one configuration (in the
    search stage): the spread behind a best trial picked without a confirm stage."""
    trials = search_trials(normalize_trials(trials))
    columns = hyperparameter_columns(trials)
    wanted = config_key({"method": method, **params})
    l0 = sweep_l0(trials)
    losses: dict[int, float] = {}
    for row in trials[trials["status"].isin(FINISHED)].to_dict("records"):
        if config_key(_config_of(row, columns)) == wanted and l0 is not None:
            losses.setdefault(seed_of(row), capped_final(row, l0))
    return stats.t_interval(np.asarray(list(losses.values()), dtype=np.float64)).to_dict()


BEST_EVIDENCE_RULE = (
    "with a confirm stage: the confirmed configuration with the lowest mean measured loss over the confirm seeds; "
    "without one: the best trial (best-trial rule) and the spread of its configuration over the search seeds"
)


def best_evidence(trials: pd.DataFrame) -> dict[str, Any] | None:
    """The best configuration with its own interval (:data:`BEST_EVIDENCE_RULE`): ``stage``, ``trial_id`` (a
    trial that ran it: the best of its runs under the best-trial rule), ``method``, ``params`` and
    ``interval`` (n, mean, sd, low, high of the measured loss over seeds). None when there is none yet."""
    trials = normalize_trials(trials)
    rows = trials.to_dict("records")
    confirmed = confirm_comparison(trials)["best"]
    if confirmed is not None:
        ids = set(confirmed["trial_ids"].values())
        ranked = sorted((k, r) for r in rows if r["trial_id"] in ids and (k := best_key(r)) is not None)
        row = ranked[0][1] if ranked else next(r for r in rows if r["trial_id"] in ids)
        interval = {k: confirmed[k] for k in ("n", "mean", "sd", "low", "high")}
        return {"stage": CONFIRM_STAGE, "trial_id": str(row["trial_id"]), "method": confirmed["method"],
                "params": confirmed["params"], "interval": interval, "rule": BEST_EVIDENCE_RULE}  # fmt: skip
    ranked = sorted((k, r) for r in search_trials(trials).to_dict("records") if (k := best_key(r)) is not None)
    if not ranked:
        return None
    row = ranked[0][1]
    params = trial_params(row, hyperparameter_columns(trials))
    return {"stage": SEARCH_STAGE, "trial_id": str(row["trial_id"]), "method": str(row["method"]), "params": params,
            "interval": best_interval(trials, params, str(row["method"])), "rule": BEST_EVIDENCE_RULE}  # fmt: skip
