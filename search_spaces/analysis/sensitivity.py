"""What a sweep says: learning-rate sensitivity, λ robustness and paired deltas against the baseline,
and :func:`analyze`, every table at once (with the best configurations of
:mod:`search_spaces.analysis.best` and the convergence speed-up of :mod:`search_spaces.analysis.speedup`).

Every function here is pure: it takes the frames that :mod:`search_spaces.run.results` reads from a sweep
directory (``trials.parquet`` / ``metrics.parquet``, formats in ``docs/sweep-dir.md``) and returns
plain tables (pandas) or JSON-ready dicts. Torch-free, Ray-free: the service and the report use it.
The trial table's columns and the basic quantities are in :mod:`search_spaces.analysis.trial_frame`, the OEC
paper's published numbers in :mod:`search_spaces.analysis.paper_reference`.

Definitions (docs/papers.md §1):

* LR sensitivity (Wortsman et al. 2023, used by the OEC paper) of a family of runs that differ only in
  the learning rate: ``LRS = 1/(K−1) · Σ_k [min(L(η_k), L0) − min_k L(η_k)]`` over the K learning
  rates, with ``L0`` the trials' recorded reference loss (``l0`` column: ``ln V``, the loss of a
  uniform predictor, by default, as the paper's text defines it; the measured initial loss with
  ``divergence.l0: initial``, as the official notebook); a final loss above ``L0`` counts as ``L0``
  (``min(final, L0)``, exactly the paper's cap), and so does a run ended early (non-finite loss, or an
  opted-in sustained condition). Runs are never ended for a transient excursion above ``L0``.
* Convergence speed-up of a method = tokens the baseline needs to reach its own final validation CE /
  tokens the method needs to reach that same value (SimReg's "30 % faster" claim, docs/papers.md §2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from search_spaces.analysis import stats
from search_spaces.analysis.best import best_configs
from search_spaces.analysis.confirm import confirm_comparison
from search_spaces.analysis.paper_reference import paper_comparison
from search_spaces.analysis.size_comparison import size_comparison
from search_spaces.analysis.sizes import largest, of_size, per_size, sizes_of
from search_spaces.analysis.speedup import SPEEDUP_RULE, convergence_speedup
from search_spaces.analysis.trial_frame import (
    FINISHED,
    capped_final,
    family_coefficients,
    float_key,
    format_coefficients,
    hyperparameter_columns,
    l0_of,
    lr_sensitivity_value,
    measured_source,
    method_order,
    normalize_trials,
    records,
    search_trials,
    seed_of,
    sort_methods,
    status_counts,
    sweep_l0,
    to_json_value,
    vocab_size_of,
)
from search_spaces.run.sweep_dir import finite_float
from trainables.losses.registry import default_coefficients

# ---------------------------------------------------------------------------------------------------
# The rules the tables state
# ---------------------------------------------------------------------------------------------------

LRS_RULE = (
    "LRS = 1/(K-1) * sum_k [min(L(lr_k), L0) - min_k L(lr_k)] over the K learning rates of runs that differ "
    "only in the learning rate (same method and coefficients); L = the measured loss of finished trials "
    "(their final test CE where measured, else their final validation CE; mean over seeds); L0 = the trials' "
    "recorded L0 (ln V unless the spec says divergence.l0: initial, the "
    "measured initial loss), a DIVERGED trial (ended by a non-finite loss or an opted-in sustained condition) "
    "counts as L0 (Wortsman et al. 2023, arXiv 2309.14322)"
)
STABLE_RULE = "largest learning rate at which no finished trial of the family diverged"
DELTA_RULE = (
    "measured loss of the method minus the baseline's, paired on the same seed and learning rate "
    "(diverged = L0); negative means the method is better; mean, sample SD, 95% t-interval and paired-t p over "
    "the seed pairs"
)
CELL_RULE = "per cell (method, coefficients, learning rate): n seeds, mean, sample SD and 95% t-interval"
LRS_CI_RULE = (
    "95% percentile bootstrap interval of LRS: the seeds of each learning-rate cell are resampled with "
    "replacement within that cell (2000 resamples, fixed seed); the LRS difference against the baseline "
    "resamples the seed pairs (method and baseline on the same seed) of each cell, and gives a verdict only "
    f"with at least {stats.BOOTSTRAP_MIN_N} seed pairs per cell (below that a percentile bootstrap interval "
    "is too narrow: its coverage falls short of 95%)"
)


# ---------------------------------------------------------------------------------------------------
# Learning-rate sensitivity, largest stable LR, λ robustness
# ---------------------------------------------------------------------------------------------------


def _families(trials: pd.DataFrame) -> dict[tuple[str, tuple[tuple[str, Any], ...]], pd.DataFrame]:
    columns = hyperparameter_columns(trials)
    keys = [(str(r["method"]), family_coefficients(r, columns)) for r in trials.to_dict("records")]
    out: dict[tuple[str, tuple[tuple[str, Any], ...]], list[int]] = {}
    for position, key in enumerate(keys):
        out.setdefault(key, []).append(position)
    return {key: trials.iloc[rows] for key, rows in sorted(out.items(), key=lambda kv: _family_sort(kv[0]))}


def _family_sort(key: tuple[str, tuple[tuple[str, Any], ...]]) -> tuple[Any, ...]:
    method, coefficients = key
    # Numbers sort as numbers (1e-07 before 100), anything else after them as text.
    return (
        method_order(method),
        method,
        tuple((k, 0, v, "") if isinstance(v, int | float) else (k, 1, 0.0, str(v)) for k, v in coefficients),
    )




def _lr_curve(group: pd.DataFrame, l0: float) -> pd.DataFrame:
    """Per learning rate of one family: capped final loss per seed, seed mean, diverged count."""
    by_lr: dict[float, list[dict[str, Any]]] = {}
    for r in group.to_dict("records"):
        if r["status"] in FINISHED:
            by_lr.setdefault(float_key(r["lr"]), []).append(r)
    rows = []
    for lr in sorted(by_lr):
        at_lr = by_lr[lr]
        losses = [capped_final(r, l0) for r in at_lr]
        seeds: dict[int, list[float]] = {}
        for r, loss in zip(at_lr, losses, strict=True):
            seeds.setdefault(seed_of(r), []).append(loss)
        per_seed = {s: float(np.mean(v)) for s, v in seeds.items()}
        cell = stats.t_interval(list(per_seed.values()))
        rows.append(
            {
                "lr": lr,
                "loss": float(np.mean(losses)),
                "n": len(at_lr),
                "diverged": sum(r["status"] == "DIVERGED" for r in at_lr),
                "seeds": per_seed,
                "sd": cell.sd,
                "low": cell.low,
                "high": cell.high,
            }
        )
    return pd.DataFrame(rows, columns=["lr", "loss", "n", "diverged", "seeds", "sd", "low", "high"])


def _lrs_interval(cells: Sequence[Sequence[float]], l0: float) -> tuple[float, float] | None:
    """:data:`LRS_CI_RULE` for one family: ``cells`` holds each learning rate's per-seed losses."""
    arrays = [np.asarray(c, dtype=np.float64) for c in cells]

    def lrs_of(drawn: Sequence[np.ndarray]) -> np.ndarray:
        means = np.stack([a[i].mean(axis=1) for a, i in zip(arrays, drawn, strict=True)], axis=1)
        return stats.lr_sensitivity_rows(means, l0)

    return stats.stratified_bootstrap([len(a) for a in arrays], lrs_of)


@per_size
def lr_sensitivity(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per family (method + fixed coefficients) with its LRS and largest stable LR.

    Columns: ``method, coefficients (dict), label, K, lrs, lrs_low, lrs_high, lrs_seed_std, n_seeds,
    diverged, largest_stable_lr, l0, lrs_grid (list), losses (list), cells (list), complete, note``.
    ``lrs`` is None when fewer than two learning rates have finished (``note`` says why); ``lrs_low`` and
    ``lrs_high`` are its bootstrap interval (:data:`LRS_CI_RULE`), None without two seeds in some cell;
    ``cells`` holds each learning rate's seeds and t-interval (:data:`CELL_RULE`). Search-stage trials only.
    """
    trials = search_trials(normalize_trials(trials))
    fallback_vocab = vocab_size_of(trials)
    rows: list[dict[str, Any]] = []
    for (method, coefficients), group in _families(trials).items():
        l0 = l0_of(group, fallback_vocab)
        coeffs = dict(coefficients)
        row: dict[str, Any] = {
            "method": method,
            "coefficients": coeffs,
            "label": method if not coeffs else f"{method} ({format_coefficients(coeffs)})",
            "K": 0,
            "lrs": None,
            "lrs_low": None,
            "lrs_high": None,
            "lrs_seed_std": None,
            "n_seeds": 0,
            "diverged": int(group["status"].eq("DIVERGED").sum()),
            "largest_stable_lr": None,
            "l0": l0,
            "lrs_grid": [],
            "losses": [],
            "cells": [],
            "diverged_lrs": [],
            "complete": bool(group["status"].isin(FINISHED).all()),
            "note": "",
        }
        if l0 is None:
            row["note"] = "vocab_size unknown: L0 = ln V cannot be computed"
            rows.append(row)
            continue
        curve = _lr_curve(group, l0)
        row["K"] = len(curve)
        row["lrs_grid"] = [float(x) for x in curve["lr"]] if len(curve) else []
        row["losses"] = [float(x) for x in curve["loss"]] if len(curve) else []
        row["cells"] = [
            {"lr": float(c["lr"]), "n": len(c["seeds"]), "mean": float(np.mean(list(c["seeds"].values()))),
             "sd": c["sd"], "low": c["low"], "high": c["high"], "diverged": int(c["diverged"]),
             "seeds": {str(s): v for s, v in sorted(c["seeds"].items())}}
            for c in curve.to_dict("records")
        ]  # fmt: skip
        if len(curve):
            row["diverged_lrs"] = [float(x) for x in curve.loc[curve["diverged"] > 0, "lr"]]
            stable = curve[curve["diverged"] == 0]
            row["largest_stable_lr"] = float(stable["lr"].max()) if len(stable) else None
            seeds = sorted({s for d in curve["seeds"] for s in d})
            row["n_seeds"] = len(seeds)
        if len(curve) < 2:
            row["note"] = f"needs >= 2 finished learning rates with the same coefficients, has {len(curve)}"
        else:
            row["lrs"] = lr_sensitivity_value(row["losses"], l0)
            interval = _lrs_interval([list(d.values()) for d in curve["seeds"]], l0)
            if interval is not None:
                row["lrs_low"], row["lrs_high"] = interval
            per_seed = [
                lr_sensitivity_value([d[s] for d in curve["seeds"]], l0)
                for s in row_seeds(curve)
                if all(s in d for d in curve["seeds"])
            ]
            if len(per_seed) >= 2:
                row["lrs_seed_std"] = float(np.std(per_seed, ddof=1))
        if row["K"] >= 2 and len(row["diverged_lrs"]) == row["K"]:
            row["note"] = "every learning rate diverged: LRS is 0 by definition, nothing was stable"
        if not row["complete"]:
            unfinished = int((~group["status"].isin(FINISHED)).sum())
            row["note"] = (row["note"] + "; " if row["note"] else "") + (
                f"{unfinished} trial(s) not finished (running, pending, stopped early or failed): not counted"
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=LRS_COLUMNS)


LRS_COLUMNS = [
    "method",
    "coefficients",
    "label",
    "K",
    "lrs",
    "lrs_low",
    "lrs_high",
    "lrs_seed_std",
    "n_seeds",
    "diverged",
    "largest_stable_lr",
    "l0",
    "lrs_grid",
    "losses",
    "cells",
    "diverged_lrs",
    "complete",
    "note",
]


# The defaults LossConfig.from_method fills in.
DEFAULT_COEFFICIENTS: dict[str, float] = default_coefficients()


def primary_families(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One family per method for the LR plot: the default coefficients if swept, else the family with
    the most finished learning rates (then the lower LRS). One per size and method where the size is an
    axis, smallest size first."""
    names = sizes_of(table)
    if len(names) > 1:
        return [f for size in names for f in primary_families(of_size(table, size))]
    out = []
    for method in sort_methods(table["method"]) if len(table) else []:
        rows = table[table["method"] == method].to_dict("records")

        def rank(r: dict[str, Any]) -> tuple[Any, ...]:
            is_default = all(
                isinstance(v, int | float) and math.isclose(float(v), DEFAULT_COEFFICIENTS.get(k, math.nan))
                for k, v in r["coefficients"].items()
            )
            lrs = finite_float(r["lrs"])
            return (not is_default, -r["K"], math.inf if lrs is None else lrs, r["label"])

        out.append(to_json_value(min(rows, key=rank)))
    return out


def row_seeds(curve: pd.DataFrame) -> list[int]:
    return sorted({s for d in curve["seeds"] for s in d})


@per_size
def lambda_robustness(trials: pd.DataFrame) -> pd.DataFrame:
    """LRS per coefficient value, for methods with exactly one coefficient (z-loss, μ-loss, soft-cap).

    Columns: ``method, coefficient, value, K, lrs, lrs_low, lrs_high, n_seeds, diverged, largest_stable_lr``
    (the interval as in :data:`LRS_CI_RULE`). Methods swept at a single coefficient value appear with that one row.
    """
    trials = normalize_trials(trials)
    table = lr_sensitivity(trials)
    rows = []
    for rec in table.to_dict("records"):
        coeffs = rec["coefficients"]
        if len(coeffs) != 1:
            continue
        ((name, value),) = coeffs.items()
        rows.append(
            {
                "method": rec["method"],
                "coefficient": name,
                "value": value,
                "K": rec["K"],
                "lrs": rec["lrs"],
                "lrs_low": rec["lrs_low"],
                "lrs_high": rec["lrs_high"],
                "n_seeds": rec["n_seeds"],
                "diverged": rec["diverged"],
                "largest_stable_lr": rec["largest_stable_lr"],
            }
        )
    columns = [
        "method", "coefficient", "value", "K", "lrs", "lrs_low", "lrs_high", "n_seeds", "diverged", "largest_stable_lr"
    ]  # fmt: skip
    rows.sort(key=lambda r: (method_order(r["method"]), r["method"], r["coefficient"], r["value"]))
    return pd.DataFrame(rows, columns=columns)


def grid_matrix(
    trials: pd.DataFrame,
    row_param: str,
    col_param: str,
    *,
    methods: Sequence[str] | None = None,
    reduce: str = "mean",
) -> dict[str, Any]:
    """Final measured loss (``capped_final``) on a ``row_param x col_param`` grid (e.g. coefficient x LR).

    Finished trials only; diverged count as ``ln V`` and are flagged. Several trials in one cell
    (seeds, or other parameters such as LR for weight x temperature) are reduced by ``mean`` over
    seeds of the ``min`` over the remaining parameters when ``reduce='min'``, else the plain mean.
    Returns ``{"rows": [...], "cols": [...], "values": [[...]], "diverged": [[...]], "counts": [[...]]}``
    (``None`` where a cell is empty).
    """
    trials = search_trials(normalize_trials(trials))
    if reduce not in ("mean", "min"):
        raise ValueError(f"reduce must be 'mean' or 'min', got {reduce!r}")
    subset = trials[trials["status"].isin(FINISHED)]
    if methods is not None:
        subset = subset[subset["method"].isin(methods)]
    if row_param not in subset.columns or col_param not in subset.columns:
        return {"rows": [], "cols": [], "values": [], "diverged": [], "counts": []}
    subset = subset[subset[row_param].notna() & subset[col_param].notna()]
    l0 = sweep_l0(trials) or math.inf
    recs = subset.to_dict("records")
    row_vals = sorted({float_key(r[row_param]) for r in recs})
    col_vals = sorted({float_key(r[col_param]) for r in recs})
    values: list[list[float | None]] = [[None] * len(col_vals) for _ in row_vals]
    diverged: list[list[int]] = [[0] * len(col_vals) for _ in row_vals]
    counts: list[list[int]] = [[0] * len(col_vals) for _ in row_vals]
    cells: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for r in recs:
        i, j = row_vals.index(float_key(r[row_param])), col_vals.index(float_key(r[col_param]))
        loss = capped_final(r, l0)
        seed = seed_of(r)
        cells.setdefault((i, j), []).append((seed, loss))
        diverged[i][j] += int(r["status"] == "DIVERGED")
        counts[i][j] += 1
    for (i, j), items in cells.items():
        if reduce == "min":
            per_seed: dict[int, float] = {}
            for seed, loss in items:
                per_seed[seed] = min(loss, per_seed.get(seed, math.inf))
            values[i][j] = float(np.mean(list(per_seed.values())))
        else:
            values[i][j] = float(np.mean([loss for _, loss in items]))
    return {"rows": row_vals, "cols": col_vals, "values": values, "diverged": diverged, "counts": counts}


# ---------------------------------------------------------------------------------------------------
# Paired deltas against the baseline
# ---------------------------------------------------------------------------------------------------


DELTA_COLUMNS = [
    "method", "label", "lr", "n_pairs", "delta_mean", "delta_std", "delta_low", "delta_high", "p", "verdict",
    "mde", "seeds_needed", "method_mean", "baseline_mean", "diverged", "pairs",
]  # fmt: skip


def _baseline_by_cell(finished: pd.DataFrame, l0: float) -> dict[tuple[float, int], float]:
    base: dict[tuple[float, int], list[float]] = {}
    for r in finished[finished["method"] == "baseline"].to_dict("records"):
        base.setdefault((float_key(r["lr"]), seed_of(r)), []).append(capped_final(r, l0))
    return {key: float(np.mean(v)) for key, v in base.items()}


def _method_pairs(
    group: pd.DataFrame, base: dict[tuple[float, int], float], l0: float
) -> dict[float, dict[int, tuple[float, float, bool]]]:
    """learning rate → seed → (method loss, baseline loss, diverged) of one family, paired on seed and LR."""
    by_lr: dict[float, dict[int, tuple[float, float, bool]]] = {}
    for r in group.to_dict("records"):
        key = (float_key(r["lr"]), seed_of(r))
        if key in base:
            by_lr.setdefault(key[0], {}).setdefault(key[1], (capped_final(r, l0), base[key], r["status"] == "DIVERGED"))
    return by_lr


@per_size
def paired_deltas(trials: pd.DataFrame) -> pd.DataFrame:
    """Per family and LR: (method − baseline) measured loss, paired on seed and LR, with its interval,
    paired-t p, verdict and power (:mod:`search_spaces.analysis.stats`). Search-stage trials only.

    Columns: :data:`DELTA_COLUMNS` (``pairs``: seed → [method, baseline] losses, for plots of every seed).
    """
    trials = search_trials(normalize_trials(trials))
    finished = trials[trials["status"].isin(FINISHED)]
    l0 = sweep_l0(trials)
    if l0 is None or not finished["method"].eq("baseline").any():
        return pd.DataFrame(columns=DELTA_COLUMNS)
    base = _baseline_by_cell(finished, l0)
    rows = []
    for (method, coefficients), group in _families(finished).items():
        if method == "baseline":
            continue
        coeffs = dict(coefficients)
        label = method if not coeffs else f"{method} ({format_coefficients(coeffs)})"
        by_lr = _method_pairs(group, base, l0)
        for lr in sorted(by_lr):
            pairs = by_lr[lr]
            ms, bs = [m for m, _, _ in pairs.values()], [b for _, b, _ in pairs.values()]
            c = stats.paired_difference(ms, bs)
            rows.append(
                {
                    "method": method,
                    "label": label,
                    "lr": lr,
                    "n_pairs": c.n,
                    "delta_mean": c.mean,
                    "delta_std": c.sd,
                    "delta_low": c.low,
                    "delta_high": c.high,
                    "p": c.p,
                    "verdict": c.verdict,
                    "mde": c.mde,
                    "seeds_needed": c.seeds_needed,
                    "method_mean": float(np.mean(ms)),
                    "baseline_mean": float(np.mean(bs)),
                    "diverged": int(sum(d for _, _, d in pairs.values())),
                    "pairs": {str(s): [m, b] for s, (m, b, _) in sorted(pairs.items())},
                }
            )
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


LRS_DIFF_COLUMNS = ["method", "label", "lrs", "baseline_lrs", "lrs_delta", "lrs_delta_low", "lrs_delta_high",
                    "verdict", "K", "n_pairs"]  # fmt: skip


@per_size
def lrs_differences(trials: pd.DataFrame) -> pd.DataFrame:
    """Per family: LRS − the baseline's LRS over the learning rates both ran, with a bootstrap interval over
    the seed pairs of each cell (:data:`LRS_CI_RULE`) and its verdict (:data:`stats.VERDICT_RULE`, on that
    interval). Search-stage trials only; families sharing fewer than two learning rates are left out."""
    trials = search_trials(normalize_trials(trials))
    finished = trials[trials["status"].isin(FINISHED)]
    l0 = sweep_l0(trials)
    if l0 is None or not finished["method"].eq("baseline").any():
        return pd.DataFrame(columns=LRS_DIFF_COLUMNS)
    base = _baseline_by_cell(finished, l0)
    rows = []
    for (method, coefficients), group in _families(finished).items():
        if method == "baseline":
            continue
        by_lr = _method_pairs(group, base, l0)
        if len(by_lr) < 2:
            continue
        cells = [np.asarray([(m, b) for m, b, _ in by_lr[lr].values()], dtype=np.float64) for lr in sorted(by_lr)]

        def lrs_delta(drawn: Sequence[np.ndarray], cells: list[np.ndarray] = cells) -> np.ndarray:
            means = np.stack([c[i].mean(axis=1) for c, i in zip(cells, drawn, strict=True)], axis=1)  # (B, K, 2)
            return stats.lr_sensitivity_rows(means[..., 0], l0) - stats.lr_sensitivity_rows(means[..., 1], l0)

        delta = float(lrs_delta([np.arange(len(c))[None, :] for c in cells])[0])
        interval = stats.stratified_bootstrap([len(c) for c in cells], lrs_delta)
        low, high = interval if interval is not None else (None, None)
        n_pairs = min(len(c) for c in cells)
        coeffs = dict(coefficients)
        rows.append(
            {
                "method": method,
                "label": method if not coeffs else f"{method} ({format_coefficients(coeffs)})",
                "lrs": lr_sensitivity_value([float(c[:, 0].mean()) for c in cells], l0),
                "baseline_lrs": lr_sensitivity_value([float(c[:, 1].mean()) for c in cells], l0),
                "lrs_delta": delta,
                "lrs_delta_low": low,
                "lrs_delta_high": high,
                "verdict": stats.bootstrap_verdict(low, high, n_pairs),
                "K": len(cells),
                "n_pairs": n_pairs,
            }
        )
    return pd.DataFrame(rows, columns=LRS_DIFF_COLUMNS)


def statistics_rules() -> dict[str, str]:
    """Every rule the intervals and verdicts follow, as the reports state them."""
    return {
        "cells": CELL_RULE,
        "verdict": stats.VERDICT_RULE,
        "power": stats.MDE_RULE,
        "lrs_interval": LRS_CI_RULE,
        "confidence": f"{stats.CONFIDENCE:.0%}",
    }


# ---------------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------------


def analyze(trials: pd.DataFrame, metrics: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every analysis table as one JSON-ready dict (what ``lossweep sweep analyze --json`` prints)."""
    trials = normalize_trials(trials)
    lrs = lr_sensitivity(trials) if len(trials) else pd.DataFrame(columns=LRS_COLUMNS)
    return to_json_value(
        {
            "counts": status_counts(trials),
            "best": best_configs(trials),
            "lr_sensitivity": {"rule": LRS_RULE, "stable_rule": STABLE_RULE, "families": records(lrs)},
            "paper": paper_comparison(lrs),
            "measured": measured_source(trials),
            "statistics": statistics_rules(),
            "lambda_robustness": records(lambda_robustness(trials)) if len(trials) else [],
            "paired_deltas": {"rule": DELTA_RULE, "rows": records(paired_deltas(trials)) if len(trials) else []},
            "lrs_differences": records(lrs_differences(trials)) if len(trials) else [],
            "confirm": confirm_comparison(trials),
            "sizes": size_comparison(primary_families(lrs)) if len(lrs) else None,
            "speedup": convergence_speedup(largest(trials)[1], metrics)
            if len(trials)
            else {"rule": SPEEDUP_RULE, "baseline": None, "methods": [], "missing": ["no trials"]},
        }
    )
