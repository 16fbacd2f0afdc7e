"""Downstream accuracy beside the loss: each evaluated trial's accuracy ± standard error per task
(trials.parquet's evaluation columns, ``search_spaces.run.sweep_dir``), and the per-seed differences of
each method against the baseline that a paired comparison across seeds is made from.

``paired_task_differences`` returns the differences and their count; the interval and the verdict are
the statistics module's to compute from them, as for every comparison lossweep prints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from search_spaces.analysis.stats import paired_difference
from search_spaces.run.sweep_dir import EVAL_ERROR_COLUMN, EVAL_STATUS_COLUMN, eval_column, eval_tasks
from trainables.losses.registry import BASELINE

DIFFERENCE_RULE = (
    "per task: accuracy of the method minus accuracy of the baseline at the same seed, over the seeds "
    "where both were evaluated (eval.on: confirm evaluates each method's best configuration at every seed)"
)


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def task_table(trials: pd.DataFrame) -> dict[str, Any]:
    """``{"tasks": [...], "rows": [...]}``: one row per evaluated trial, with its loss and per task
    ``{"acc", "acc_se", "n"}`` (None where that task has no score)."""
    if trials.empty or EVAL_STATUS_COLUMN not in trials:
        return {"tasks": [], "rows": []}
    tasks = eval_tasks(trials.columns)
    rows = []
    for rec in trials[trials[EVAL_STATUS_COLUMN].notna()].to_dict("records"):
        scores = {}
        for task in tasks:
            acc = _number(rec.get(eval_column(task, "acc")))
            se = _number(rec.get(eval_column(task, "acc_se")))
            n = _number(rec.get(eval_column(task, "n")))
            scores[task] = None if acc is None else {"acc": acc, "acc_se": se, "n": int(n) if n is not None else None}
        rows.append(
            {
                "trial_id": rec["trial_id"],
                "method": rec.get("method"),
                "lr": _number(rec.get("lr")),
                "seed": int(rec["seed"]) if _number(rec.get("seed")) is not None else None,
                "best_val_loss": _number(rec.get("best_val_loss")),
                "eval_status": rec.get(EVAL_STATUS_COLUMN),
                "eval_error": rec.get(EVAL_ERROR_COLUMN) if isinstance(rec.get(EVAL_ERROR_COLUMN), str) else None,
                "scores": scores,
            }
        )
    return {"tasks": tasks, "rows": rows}


def paired_task_differences(table: Mapping[str, Any], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """For each task and each method other than ``baseline``: ``n`` seeds where both were evaluated,
    the per-seed ``differences`` (method − baseline accuracy), their ``mean``, its 95 % interval
    (``low``, ``high``), paired-t ``p``, ``verdict`` and ``mde`` (``search_spaces.analysis.stats``). With several
    configurations of one method at a seed (``eval.on: all``), the one with the lowest best validation
    loss stands for it."""
    chosen: dict[tuple[str, int], Mapping[str, Any]] = {}
    for row in table.get("rows", []):
        if row.get("seed") is None or row.get("method") is None:
            continue
        key = (row["method"], row["seed"])
        loss = row.get("best_val_loss")
        held = chosen.get(key)
        if held is None or (loss is not None and (held.get("best_val_loss") is None or loss < held["best_val_loss"])):
            chosen[key] = row
    out = []
    methods = sorted({m for m, _ in chosen if m != baseline})
    for task in table.get("tasks", []):
        for method in methods:
            diffs = []
            for (m, seed), row in sorted(chosen.items(), key=lambda kv: kv[0][1]):
                base = chosen.get((baseline, seed))
                if m != method or base is None:
                    continue
                a, b = (row["scores"] or {}).get(task), (base["scores"] or {}).get(task)
                if a is not None and b is not None:
                    diffs.append({"seed": seed, "difference": a["acc"] - b["acc"]})
            if diffs:
                values = [d["difference"] for d in diffs]
                # stats judges a loss (lower is better): an accuracy's gain is the loss of its negative
                judged = paired_difference([-v for v in values], [0.0] * len(values))
                out.append({"task": task, "method": method, "baseline": baseline, "n": len(values),
                            "differences": diffs, "mean": sum(values) / len(values),
                            "low": None if judged.high is None else -judged.high,
                            "high": None if judged.low is None else -judged.low,
                            "p": judged.p, "verdict": judged.verdict, "mde": judged.mde})  # fmt: skip
    return out
