"""The report's figures, drawn from its document (:mod:`search_spaces.reports.report`) and the trial
frame: LR sensitivity, λ-robustness heat maps (or scatters when the coefficients were searched),
training curves, diagnostics and speed-up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from search_spaces.analysis import sensitivity as analysis
from search_spaces.analysis import trial_frame
from search_spaces.reports import plots
from search_spaces.run.sweep_dir import TrialStatus
from search_spaces.spec.sweep_spec import SIZE_PARAM
from trainables.losses.registry import TERMS


def heatmap_terms() -> list[tuple[str, tuple[str, ...]]]:
    """The penalties of the registry and the coefficients their λ-robustness map shows: the weight
    against the learning rate, or, for a penalty with more swept coefficients, its first two
    against each other (the best learning rate per cell)."""
    out = []
    for name, term in TERMS.items():
        columns = tuple(term.flat_coefficients())
        if term.kind == "penalty" and columns:
            out.append((name, columns[:2]))
    return out



def figures(data: Mapping[str, Any], lrs_table: pd.DataFrame, trials: pd.DataFrame) -> list[plots.Plot]:
    figures: list[plots.Plot] = []
    if data["confirm"]["configs"]:
        figures.append(plots.confirm_plot(data["confirm"]["configs"]))
    l0 = data["sweep"]["l0"]
    primary = analysis.primary_families(lrs_table) if len(lrs_table) else []
    lines = [_searched_points(f, trials, l0) if f["K"] < 2 else f for f in primary]
    lines = [f for f in lines if f["lrs_grid"] or f.get("points")]
    if lines:
        figures.append(plots.lr_sensitivity_plot(lines, l0=l0, measured=data["measured"]))
    if data.get("sizes"):
        figures.append(plots.size_plot(data["sizes"]["sizes"], data["sizes"]["rows"]))
        figures.append(plots.size_curves_plot(data["sizes"]["sizes"], data["sizes"]["rows"], measured=data["measured"]))
    heat = data["lambda_robustness"]["heatmaps"]
    largest = data["sizes"]["sizes"][-1] if data.get("sizes") else None  # heat maps show the largest size
    for method, columns in heatmap_terms():
        if method not in heat:
            continue
        if len(columns) > 1:
            figures.append(_pair_figure(method, heat[method], trials, l0))
            continue
        column, title = columns[0], f"{TERMS[method].label} λ"
        matrix = heat[method]
        caption = (
            f"Final {data['measured']} of {method} by {column} (rows) and peak learning rate (columns), "
            "mean over seeds. "
            "A robust coefficient keeps its row low across learning rates; dark red cells held diverged runs "
            "(✕ k/n: k of the cell's n runs), counted as ln V."
        )
        if matrix["kind"] == "grid":
            figures.append(
                plots.heatmap_plot(
                    f"heat-{method}",
                    matrix,
                    title=f"λ robustness: {title} x learning rate",
                    row_label=column,
                    col_label="peak learning rate",
                    caption=caption,
                    l0=l0,
                )
            )
            families = [f for f in data["lr_sensitivity"]["families"]
                        if f["method"] == method and (f.get("coefficients") or {}).get(column) is not None
                        and f.get(SIZE_PARAM) == largest]  # fmt: skip
            if len(families) >= 2:
                figures.append(plots.lambda_plot(f"lambda-{method}", families, column=column,
                                                 title=f"λ robustness: {title}, every seed", l0=l0))  # fmt: skip
        else:
            figures.append(_scatter(f"heat-{method}", trials, method, column, "lr", _SCATTER_CAPTION))
    if data["curves"]:
        figures.append(plots.val_curve_plot(data["curves"]))
        figures.append(plots.diagnostics_plot(data["curves"]))
    reached = [m for m in data["speedup"]["methods"]]
    if reached:
        figures.append(plots.speedup_plot(reached))
    return figures


def _pair_figure(method: str, matrix: Mapping[str, Any], trials: pd.DataFrame, l0: float) -> plots.Plot:
    label = TERMS[method].label
    row, col = matrix["row"], matrix["col"]
    a, b = row.removeprefix(f"{method}_"), col.removeprefix(f"{method}_")
    if matrix["kind"] != "grid":
        return _scatter(f"heat-{method}", trials, method, row, col, _SCATTER_CAPTION)
    caption = (
        f"Final measured loss of {label} by {a} (rows) and {b} (columns): the best learning rate per "
        "cell, mean over seeds; dark red cells held diverged runs (✕ k/n), counted as ln V."
    )
    return plots.heatmap_plot(
        f"heat-{method}", matrix, title=f"{label}: {a} x {b}", row_label=row, col_label=col, caption=caption, l0=l0
    )


_SCATTER_CAPTION = (
    "The coefficients were searched, not gridded: each dot is one finished trial (any learning rate), coloured by "
    "its final measured loss (test CE where measured); ✕ marks diverged trials. Trials stopped early by ASHA are "
    "left out."
)


def _searched_points(family: Mapping[str, Any], trials: pd.DataFrame, l0: float | None) -> dict[str, Any]:
    """A method whose configurations each ran at one learning rate (a TPE search): its finished trials as
    unconnected points instead of one arbitrary configuration."""
    method = family["method"]
    rows = trials[(trials["method"] == method) & trials["status"].isin(trial_frame.FINISHED)]
    cap = l0 if l0 is not None else float("inf")
    points = sorted(
        (float(r["lr"]), trial_frame.capped_final(r, cap), r["status"] == TrialStatus.DIVERGED)
        for r in rows.to_dict("records")
    )
    return {
        "method": method,
        "label": f"{method} (searched, {len(points)} trials)",
        "lrs": None,
        "lrs_grid": [],
        "losses": [],
        "diverged_lrs": [],
        "points": points,
    }


def _scatter(name: str, trials: pd.DataFrame, method: str, x: str, y: str, caption: str) -> plots.Plot:
    l0 = trial_frame.sweep_l0(trials) or trial_frame.uniform_loss(2)
    rows = trials[(trials["method"] == method) & trials["status"].isin(trial_frame.FINISHED)]
    points = [
        {
            x: float(r[x]),
            y: float(r[y]),
            "loss": trial_frame.capped_final(r, l0),
            "diverged": r["status"] == TrialStatus.DIVERGED,
        }
        for r in rows.to_dict("records")
        if not (pd.isna(r.get(x)) or pd.isna(r.get(y)))
    ]
    return plots.scatter_plot(name, points, x=x, y=y, title=f"{method}: {x} x {y}", caption=caption)

