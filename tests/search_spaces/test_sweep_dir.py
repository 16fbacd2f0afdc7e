"""The sweep-dir contract: one best-trial rule that progress.json, the report's analysis and the service's
/best-config all apply, so they name the same trial."""

from __future__ import annotations

import math

import pandas as pd

from search_spaces.analysis import best
from search_spaces.run.callbacks import build_progress
from search_spaces.run.sweep_dir import BEST_RULE, best_key, best_trial
from search_spaces.spec.presets import get_preset
from service.results import best_trial as service_best


def _row(tid: str, status: str, best: float | None, final: float | None, **extra: object) -> dict[str, object]:
    return {"trial_id": tid, "method": "baseline", "lr": 1e-3, "seed": 0, "status": status,
            "best_val_loss": best, "final_val_loss": final, "best_step": 10, "steps": 20, "tokens": 100,
            "diverged_step": -1, "diverged_cause": "", **extra}


def test_best_key_follows_the_rule() -> None:
    assert best_key(_row("a", "DIVERGED", 1.0, 1.0)) is None
    assert best_key(_row("a", "ERROR", 1.0, 1.0)) is None
    assert best_key(_row("a", "PENDING", 1.0, 1.0)) is None
    assert best_key(_row("a", "TERMINATED", math.nan, 1.0)) is None
    assert best_key(_row("a", "RUNNING", 2.0, None)) == (2.0, math.inf, "a")
    assert "ties go to the lower final validation CE" in BEST_RULE


def test_progress_report_and_service_name_the_same_best_trial() -> None:
    rows = [
        _row("t-first", "TERMINATED", 2.0, 2.5),  # ties on best CE, worse final CE
        _row("t-second", "STOPPED", 2.0, 2.1),  # the rule's winner
        _row("t-div", "DIVERGED", 1.0, 5.5, diverged_step=4),
        _row("t-err", "ERROR", 0.5, None),
    ]
    assert best_trial(rows)["trial_id"] == "t-second"  # type: ignore[index]
    progress = build_progress("s", get_preset("demo"), rows, status="RUNNING", elapsed_s=1.0)
    report = best.best_configs(pd.DataFrame(rows))
    service = service_best(pd.DataFrame(rows))
    assert progress["best"]["trial_id"] == report["overall"]["trial_id"] == service["trial_id"] == "t-second"  # type: ignore[index]
