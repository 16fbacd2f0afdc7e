"""What a sweep says: best configurations, learning-rate sensitivity, λ robustness, paired deltas
against the baseline and convergence speed-up.

Every function here is pure: it takes the frames that :mod:`search_spaces.results` reads from a sweep
directory (``trials.parquet`` / ``metrics.parquet``, formats in ``docs/sweep-dir.md``) and returns
plain tables (pandas) or JSON-ready dicts. Torch-free, Ray-free: the service and the report use it.

Definitions (PAPERS.md §1):

* LR sensitivity (Wortsman et al. 2023, used by the OEC paper) of a family of runs that differ only in
  the learning rate: ``LRS = 1/(K−1) · Σ_k [min(L(η_k), L0) − min_k L(η_k)]`` over the K learning
  rates, with ``L0`` the trials' recorded reference loss (``l0`` column: ``ln V``, the loss of a
  uniform predictor, by default, as the paper's text defines it; the measured initial loss with
  ``divergence.l0: initial``, as the official notebook); a final loss above ``L0`` counts as ``L0``
  (``min(final, L0)``, exactly the paper's cap), and so does a run ended early (non-finite loss, or an
  opted-in sustained condition). Runs are never ended for a transient excursion above ``L0``.
* Convergence speed-up of a method = tokens the baseline needs to reach its own final validation CE /
  tokens the method needs to reach that same value (SimReg's "30 % faster" claim, PAPERS.md §2).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search_spaces.sweep_dir import BEST_RULE, ELIGIBLE_FOR_BEST, best_key, finite_float
from search_spaces.sweep_dir import TRIAL_STATUSES as STATUSES
from trainables.losses.registry import COEFFICIENTS, default_coefficients, method_rank

# ---------------------------------------------------------------------------------------------------
# Vocabulary of the sweep directory
# ---------------------------------------------------------------------------------------------------

# Trials whose final validation CE is the end of their full budget: the only ones LRS may compare.
FINISHED: tuple[str, ...] = ("TERMINATED", "DIVERGED")

LRS_RULE = (
    "LRS = 1/(K-1) * sum_k [min(L(lr_k), L0) - min_k L(lr_k)] over the K learning rates of runs that differ "
    "only in the learning rate (same method and coefficients); L = final validation CE of finished trials "
    "(mean over seeds); L0 = the trials' recorded L0 (ln V unless the spec says divergence.l0: initial, the "
    "measured initial loss), a DIVERGED trial (ended by a non-finite loss or an opted-in sustained condition) "
    "counts as L0 (Wortsman et al. 2023, arXiv 2309.14322)"
)
STABLE_RULE = "largest learning rate at which no finished trial of the family diverged"
SPEEDUP_RULE = (
    "tokens the best baseline trial needs to reach its own final validation CE / tokens the method's best "
    "trial needs to reach that value (linear interpolation between evaluations); > 1 means faster"
)
SEED_SPEEDUP_RULE = (
    "per seed: the same ratio between the trials that repeat the best baseline configuration and the "
    "method's best configuration on that seed, the target being that seed's baseline final validation CE; "
    "mean and sample std over the seeds where the method reached it"
)
DELTA_RULE = (
    "final validation CE of the method minus the baseline's, paired on the same seed and learning rate "
    "(diverged = ln V); negative means the method is better; spread = sample std over seeds"
)

# ---------------------------------------------------------------------------------------------------
# Paper constants (for reports; the full table is in the reference CSV)
# ---------------------------------------------------------------------------------------------------

OEC_CITATION = (
    "Stollenwerk, Lokrantz, Hertzberg (2026): Output Embedding Centering, arXiv 2601.02031; "
    "LR sensitivity after Wortsman et al. (2023), arXiv 2309.14322"
)
SIMREG_CITATION = "Sun, Wang, Zeng, et al. (2026): SimReg, arXiv 2605.08809"
PAPER_LR_GRID: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
PAPER_LAMBDA_GRID: tuple[float, ...] = (1e-7, 1e-4, 1e-1, 1e2)
PAPER_VOCAB_SIZE = 50304
# LR sensitivity, no weight tying, λ = 1e-4 (OEC paper, table of LR sensitivity).
PAPER_LRS: dict[str, dict[str, float]] = {
    "16M": {"baseline": 0.306, "z_loss": 0.054, "mu_loss": 0.031, "mu_centering": 0.028},
    "57M": {"baseline": 0.508, "z_loss": 0.235, "mu_loss": 0.031, "mu_centering": 0.041},
    "221M": {"baseline": 0.412, "z_loss": 0.109, "mu_loss": 0.056, "mu_centering": 0.061},
}
# With weight tying (v2 of the paper), 221M.
PAPER_LRS_TIED_221M: dict[str, float] = {
    "baseline": 0.330,
    "softcap": 0.055,
    "z_loss": 0.109,
    "mu_loss": 0.058,
    "mu_centering": 0.066,
}
# Final test loss per learning rate, no weight tying, 221M, λ = 1e-4.
PAPER_LOSS_221M: dict[str, tuple[float, ...]] = {
    "baseline": (3.090, 3.050, 3.050, 3.076, 3.153, 3.305, 5.099),
    "z_loss": (3.089, 3.050, 3.049, 3.069, 3.091, 3.173, 3.478),
    "mu_loss": (3.090, 3.052, 3.050, 3.075, 3.084, 3.140, 3.195),
    "mu_centering": (3.091, 3.051, 3.050, 3.073, 3.113, 3.127, 3.208),
}

# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


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


def _key(value: float) -> float:
    """A grouping key for floats written by different code paths (1e-3 vs 0.0010000000000000002)."""
    return float(f"{float(value):.9g}")


_finite = finite_float


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


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """The documented coefficient columns present in ``trials`` (``lr`` and ``seed`` are handled apart).

    Other columns are never taken as hyperparameters: bookkeeping the driver adds (a node id, a
    checkpoint path) would otherwise split families that differ only in where they ran."""
    return [c for c in COEFFICIENTS if c in trials.columns]


def trial_params(row: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """The non-null hyperparameters of one trial (``lr`` first), JSON-ready."""
    out: dict[str, Any] = {"lr": _finite(row.get("lr"))}
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


def _coefficients(row: Mapping[str, Any], columns: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    params = trial_params(row, columns)
    params.pop("lr", None)
    return tuple((k, _key(v) if isinstance(v, float) else v) for k, v in params.items())


def vocab_size_of(trials: pd.DataFrame) -> int | None:
    if "vocab_size" not in trials.columns:
        return None
    values = pd.to_numeric(trials["vocab_size"], errors="coerce").dropna()
    values = values[values >= 2]
    return int(values.iloc[0]) if len(values) else None


def _l0(group: pd.DataFrame, fallback: int | None) -> float | None:
    """The family's ``L0``: the mean of what its trials recorded (``ln V``, or each run's measured
    initial loss), else ``ln V`` from the vocabulary (sweeps written before ``l0`` was recorded)."""
    if "l0" in group.columns:
        recorded = pd.to_numeric(group["l0"], errors="coerce").dropna()
        if len(recorded):
            return float(recorded.mean())
    vocab = vocab_size_of(group) or fallback
    return uniform_loss(vocab) if vocab else None


def sweep_l0(trials: pd.DataFrame) -> float | None:
    """``L0`` of a whole sweep (``_l0`` over every trial); None when unknown."""
    return _l0(normalize_trials(trials), vocab_size_of(trials)) if len(trials) else None


def _seed(row: Mapping[str, Any]) -> int:
    value = row.get("seed")
    return -1 if value is None or pd.isna(value) else int(value)


def capped_final(row: Mapping[str, Any], l0: float) -> float:
    if row.get("status") == "DIVERGED":
        return l0
    value = _finite(row.get("final_val_loss"))
    return l0 if value is None else min(value, l0)


# ---------------------------------------------------------------------------------------------------
# Best configurations
# ---------------------------------------------------------------------------------------------------


def _best_record(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    return {
        "trial_id": str(row["trial_id"]),
        "method": str(row["method"]),
        "status": str(row["status"]),
        "params": trial_params(row, columns),
        "seed": None if pd.isna(row.get("seed")) else int(row["seed"]),
        "val_loss": _finite(row.get("best_val_loss")),
        "final_val_loss": _finite(row.get("final_val_loss")),
        "step": None if pd.isna(row.get("best_step")) else int(row["best_step"]),
        "steps": None if pd.isna(row.get("steps")) else int(row["steps"]),
        "tokens": None if pd.isna(row.get("tokens")) else int(row["tokens"]),
        "config_hash": None if pd.isna(row.get("config_hash")) else str(row.get("config_hash")),
    }


def _ranked(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that may be the best, best first (sweep_dir.BEST_RULE, the rule progress.json and the
    service's /best-config use too)."""
    keys = [best_key(r) for r in trials.to_dict("records")]
    order = sorted((k, i) for i, k in enumerate(keys) if k is not None)
    return trials.iloc[[i for _, i in order]]


def best_configs(trials: pd.DataFrame) -> dict[str, Any]:
    """The best trial overall and per method under :data:`BEST_RULE`; says what is missing."""
    trials = normalize_trials(trials)
    columns = hyperparameter_columns(trials)
    ranked = _ranked(trials)
    out: dict[str, Any] = {"rule": BEST_RULE, "overall": None, "per_method": {}, "missing": []}
    if ranked.empty:
        out["missing"].append(
            "no best configuration yet: no trial has a validation CE outside DIVERGED/ERROR trials"
            if len(trials)
            else "no best configuration: the sweep has no trials yet"
        )
        return out
    out["overall"] = _best_record(ranked.iloc[0].to_dict(), columns)
    for method in sort_methods(str(m) for m in trials["method"].dropna().unique()):
        of_method = ranked[ranked["method"] == method]
        if of_method.empty:
            out["missing"].append(
                f"{method}: no trial with a validation CE yet (diverged, failed, pending or not yet evaluated)"
            )
            continue
        out["per_method"][str(method)] = _best_record(of_method.iloc[0].to_dict(), columns)
    return out


# ---------------------------------------------------------------------------------------------------
# Learning-rate sensitivity, largest stable LR, λ robustness
# ---------------------------------------------------------------------------------------------------


def _families(trials: pd.DataFrame) -> dict[tuple[str, tuple[tuple[str, Any], ...]], pd.DataFrame]:
    columns = hyperparameter_columns(trials)
    keys = [(str(r["method"]), _coefficients(r, columns)) for r in trials.to_dict("records")]
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


def method_order(method: str) -> int:
    """Baseline first, then the loss registry's order, then combinations and anything else."""
    return method_rank(method)


def sort_methods(methods: Iterable[str]) -> list[str]:
    return sorted(set(methods), key=lambda m: (method_order(m), m))


def _lr_curve(group: pd.DataFrame, l0: float) -> pd.DataFrame:
    """Per learning rate of one family: capped final loss per seed, seed mean, diverged count."""
    by_lr: dict[float, list[dict[str, Any]]] = {}
    for r in group.to_dict("records"):
        if r["status"] in FINISHED:
            by_lr.setdefault(_key(r["lr"]), []).append(r)
    rows = []
    for lr in sorted(by_lr):
        at_lr = by_lr[lr]
        losses = [capped_final(r, l0) for r in at_lr]
        seeds: dict[int, list[float]] = {}
        for r, loss in zip(at_lr, losses, strict=True):
            seeds.setdefault(_seed(r), []).append(loss)
        rows.append(
            {
                "lr": lr,
                "loss": float(np.mean(losses)),
                "n": len(at_lr),
                "diverged": sum(r["status"] == "DIVERGED" for r in at_lr),
                "seeds": {s: float(np.mean(v)) for s, v in seeds.items()},
            }
        )
    return pd.DataFrame(rows, columns=["lr", "loss", "n", "diverged", "seeds"])


def lr_sensitivity(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per family (method + fixed coefficients) with its LRS and largest stable LR.

    Columns: ``method, coefficients (dict), label, K, lrs, lrs_seed_std, n_seeds, diverged,
    largest_stable_lr, l0, lrs_grid (list), losses (list), complete, note``.
    ``lrs`` is None when fewer than two learning rates have finished (``note`` says why).
    """
    trials = normalize_trials(trials)
    fallback_vocab = vocab_size_of(trials)
    rows: list[dict[str, Any]] = []
    for (method, coefficients), group in _families(trials).items():
        l0 = _l0(group, fallback_vocab)
        coeffs = dict(coefficients)
        row: dict[str, Any] = {
            "method": method,
            "coefficients": coeffs,
            "label": method if not coeffs else f"{method} ({format_coefficients(coeffs)})",
            "K": 0,
            "lrs": None,
            "lrs_seed_std": None,
            "n_seeds": 0,
            "diverged": int(group["status"].eq("DIVERGED").sum()),
            "largest_stable_lr": None,
            "l0": l0,
            "lrs_grid": [],
            "losses": [],
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
    "lrs_seed_std",
    "n_seeds",
    "diverged",
    "largest_stable_lr",
    "l0",
    "lrs_grid",
    "losses",
    "diverged_lrs",
    "complete",
    "note",
]


# The defaults LossConfig.from_method fills in.
DEFAULT_COEFFICIENTS: dict[str, float] = default_coefficients()


def primary_families(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One family per method for the LR plot: the default coefficients if swept, else the family with
    the most finished learning rates (then the lower LRS)."""
    out = []
    for method in sort_methods(table["method"]) if len(table) else []:
        rows = table[table["method"] == method].to_dict("records")

        def rank(r: dict[str, Any]) -> tuple[Any, ...]:
            is_default = all(
                isinstance(v, int | float) and math.isclose(float(v), DEFAULT_COEFFICIENTS.get(k, math.nan))
                for k, v in r["coefficients"].items()
            )
            lrs = _finite(r["lrs"])
            return (not is_default, -r["K"], math.inf if lrs is None else lrs, r["label"])

        out.append(to_json_value(min(rows, key=rank)))
    return out


def row_seeds(curve: pd.DataFrame) -> list[int]:
    return sorted({s for d in curve["seeds"] for s in d})


def lambda_robustness(trials: pd.DataFrame) -> pd.DataFrame:
    """LRS per coefficient value, for methods with exactly one coefficient (z-loss, μ-loss, soft-cap).

    Columns: ``method, coefficient, value, K, lrs, diverged, largest_stable_lr``. Methods swept at a
    single coefficient value appear with that one row.
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
                "diverged": rec["diverged"],
                "largest_stable_lr": rec["largest_stable_lr"],
            }
        )
    columns = ["method", "coefficient", "value", "K", "lrs", "diverged", "largest_stable_lr"]
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
    """Final validation CE on a ``row_param x col_param`` grid (e.g. coefficient x LR).

    Finished trials only; diverged count as ``ln V`` and are flagged. Several trials in one cell
    (seeds, or other parameters such as LR for weight x temperature) are reduced by ``mean`` over
    seeds of the ``min`` over the remaining parameters when ``reduce='min'``, else the plain mean.
    Returns ``{"rows": [...], "cols": [...], "values": [[...]], "diverged": [[...]], "counts": [[...]]}``
    (``None`` where a cell is empty).
    """
    trials = normalize_trials(trials)
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
    row_vals = sorted({_key(r[row_param]) for r in recs})
    col_vals = sorted({_key(r[col_param]) for r in recs})
    values: list[list[float | None]] = [[None] * len(col_vals) for _ in row_vals]
    diverged: list[list[int]] = [[0] * len(col_vals) for _ in row_vals]
    counts: list[list[int]] = [[0] * len(col_vals) for _ in row_vals]
    cells: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for r in recs:
        i, j = row_vals.index(_key(r[row_param])), col_vals.index(_key(r[col_param]))
        loss = capped_final(r, l0)
        seed = _seed(r)
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


def paired_deltas(trials: pd.DataFrame) -> pd.DataFrame:
    """Per family and LR: mean and spread of (method − baseline) final validation CE, paired on seed and LR.

    Columns: ``method, label, lr, n_pairs, delta_mean, delta_std, method_mean, baseline_mean, diverged``.
    """
    trials = normalize_trials(trials)
    columns = [
        "method",
        "label",
        "lr",
        "n_pairs",
        "delta_mean",
        "delta_std",
        "method_mean",
        "baseline_mean",
        "diverged",
    ]
    finished = trials[trials["status"].isin(FINISHED)]
    baseline = finished[finished["method"] == "baseline"]
    if baseline.empty:
        return pd.DataFrame(columns=columns)
    l0 = sweep_l0(trials)
    if l0 is None:
        return pd.DataFrame(columns=columns)
    base: dict[tuple[float, int], list[float]] = {}
    for r in baseline.to_dict("records"):
        base.setdefault((_key(r["lr"]), _seed(r)), []).append(capped_final(r, l0))
    rows = []
    for (method, coefficients), group in _families(finished).items():
        if method == "baseline":
            continue
        coeffs = dict(coefficients)
        label = method if not coeffs else f"{method} ({format_coefficients(coeffs)})"
        by_lr: dict[float, list[tuple[float, float, bool]]] = {}
        for r in group.to_dict("records"):
            key = (_key(r["lr"]), _seed(r))
            if key not in base:
                continue
            b = float(np.mean(base[key]))
            by_lr.setdefault(key[0], []).append((capped_final(r, l0), b, r["status"] == "DIVERGED"))
        for lr in sorted(by_lr):
            pairs = by_lr[lr]
            deltas = [m - b for m, b, _ in pairs]
            rows.append(
                {
                    "method": method,
                    "label": label,
                    "lr": lr,
                    "n_pairs": len(pairs),
                    "delta_mean": float(np.mean(deltas)),
                    "delta_std": float(np.std(deltas, ddof=1)) if len(deltas) >= 2 else None,
                    "method_mean": float(np.mean([m for m, _, _ in pairs])),
                    "baseline_mean": float(np.mean([b for _, b, _ in pairs])),
                    "diverged": int(sum(d for _, _, d in pairs)),
                }
            )
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------------
# Convergence speed-up
# ---------------------------------------------------------------------------------------------------


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
        return tuple(sorted((k, _key(v) if isinstance(v, float) else v) for k, v in params.items()))

    wanted = key(record["params"])
    out: dict[int, str] = {}
    for row in trials.sort_values("trial_id", kind="mergesort").to_dict("records"):
        if str(row["method"]) != record["method"] or row["status"] not in (*ELIGIBLE_FOR_BEST, "DIVERGED"):
            continue
        if key(trial_params(row, columns)) == wanted:
            out.setdefault(_seed(row), str(row["trial_id"]))
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
        "per_seed": per_seed,
        "seeds_reached": len(values),
        "speedup_mean": float(np.mean(values)) if values else None,
        "speedup_std": float(np.std(values, ddof=1)) if len(values) >= 2 else None,
    }


def convergence_speedup(trials: pd.DataFrame, metrics: pd.DataFrame | None) -> dict[str, Any]:
    """Speed-up of each method's best trial against the best baseline trial (:data:`SPEEDUP_RULE`),
    and over the seeds that repeat both configurations (:data:`SEED_SPEEDUP_RULE`)."""
    trials = normalize_trials(trials)
    out: dict[str, Any] = {
        "rule": SPEEDUP_RULE,
        "seed_rule": SEED_SPEEDUP_RULE,
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


# ---------------------------------------------------------------------------------------------------
# The paper's reference table
# ---------------------------------------------------------------------------------------------------

_RUN_NAME = re.compile(
    r"^(?P<prefix>[^-]+)-(?P<size>\d+M)-.*-lr(?P<lr>\d+)-(?P<method>[a-z]+)-g(?P<coef>[0-9.e+-]+)-s(?P<seed>\d+)$"
)
_PAPER_METHODS = {"baseline": "baseline", "zloss": "z_loss", "muloss": "mu_loss", "mucentering": "mu_centering"}


def read_paper_runs(path: str | Path) -> pd.DataFrame:
    """The OEC paper's published runs (``oec_loss_overview_all.csv``) as ``size, method, coefficient,
    lr, seed, test_loss`` (run-name format: ``shared/reference/README.md``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paper reference table not found: {path}")
    raw = pd.read_csv(path)
    if "name" not in raw.columns or "test_loss" not in raw.columns:
        raise ValueError(f"{path}: expected columns 'name' and 'test_loss'")
    rows = []
    for name, loss in zip(raw["name"], raw["test_loss"], strict=True):
        match = _RUN_NAME.match(str(name))
        if match is None:
            raise ValueError(f"{path}: run name {name!r} does not follow the documented format")
        method = _PAPER_METHODS.get(match["method"])
        if method is None:
            raise ValueError(f"{path}: unknown method {match['method']!r} in run {name!r}")
        rows.append(
            {
                "size": match["size"],
                "method": method,
                "coefficient": float(match["coef"]),
                "lr": int(match["lr"]) * 1e-4,
                "seed": int(match["seed"]),
                "test_loss": float(loss),
            }
        )
    return pd.DataFrame(rows)


def paper_lr_sensitivity(path: str | Path, *, vocab_size: int = PAPER_VOCAB_SIZE) -> pd.DataFrame:
    """LRS per model size, method and coefficient recomputed from the paper's published runs.

    Columns ``size, method, coefficient, K, lrs`` (coefficient 0 for baseline and μ-centering).
    """
    runs = read_paper_runs(path)
    l0 = uniform_loss(vocab_size)
    rows = []
    for (size, method, coef), group in runs.groupby(["size", "method", "coefficient"], sort=True):
        curve = group.groupby("lr")["test_loss"].mean()
        rows.append(
            {
                "size": size,
                "method": method,
                "coefficient": float(coef),
                "K": len(curve),
                "lrs": lr_sensitivity_value(list(curve.values), l0),
            }
        )
    rows.sort(key=lambda r: (int(r["size"].rstrip("M")), method_order(r["method"]), r["coefficient"]))
    return pd.DataFrame(rows, columns=["size", "method", "coefficient", "K", "lrs"])


def paper_lrs_by_size(path: str | Path, *, coefficient: float = 1e-4) -> dict[str, dict[str, float]]:
    """``{size: {method: LRS}}`` at the paper's default λ (baseline and μ-centering have none)."""
    table = paper_lr_sensitivity(path)
    out: dict[str, dict[str, float]] = {}
    for rec in table.to_dict("records"):
        if rec["method"] in ("z_loss", "mu_loss") and not math.isclose(rec["coefficient"], coefficient):
            continue
        out.setdefault(rec["size"], {})[rec["method"]] = float(rec["lrs"])
    return out


def uses_paper_lr_grid(lrs: Iterable[float]) -> bool:
    """True when the sweep's learning rates are exactly the paper's grid (so its LRS compare)."""
    mine = sorted({_key(x) for x in lrs})
    return len(mine) == len(PAPER_LR_GRID) and all(
        math.isclose(a, b, rel_tol=1e-6) for a, b in zip(mine, PAPER_LR_GRID, strict=True)
    )


def paper_comparison(table: pd.DataFrame) -> dict[str, Any] | None:
    """The paper's published LRS beside ours, when the sweep used the paper's LR grid."""
    if table.empty:
        return None
    grids = [row for row in table.to_dict("records") if row["K"] >= 2]
    if not grids or not any(uses_paper_lr_grid(row["lrs_grid"]) for row in grids):
        return None
    return {
        "citation": OEC_CITATION,
        "note": (
            "published LRS of the OEC paper (no weight tying, lambda = 1e-4, 13.1B FineWeb tokens, V = 50304); "
            "weight tying, 221M, for soft-capping"
        ),
        "no_tying": PAPER_LRS,
        "tied_221M": PAPER_LRS_TIED_221M,
    }


# ---------------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------------


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
            "lambda_robustness": records(lambda_robustness(trials)) if len(trials) else [],
            "paired_deltas": {"rule": DELTA_RULE, "rows": records(paired_deltas(trials)) if len(trials) else []},
            "speedup": convergence_speedup(trials, metrics)
            if len(trials)
            else {"rule": SPEEDUP_RULE, "baseline": None, "methods": [], "missing": ["no trials"]},
        }
    )
