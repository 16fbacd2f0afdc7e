"""The spec's ``eval:``: which trials it names, and a failed evaluation that leaves training results alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from search_spaces.run import results
from search_spaces.run.evaluation import merge_into_trials, run_evaluations, targets
from search_spaces.run.sweep_dir import EVAL_ERROR_COLUMN, EVAL_STATUS_COLUMN, eval_column, eval_tasks
from search_spaces.spec.sweep_spec import SweepSpec


def _row(tid: str, method: str, lr: float, seed: int, best: float, status: str = "TERMINATED") -> dict[str, Any]:
    return {"trial_id": tid, "method": method, "lr": lr, "seed": seed, "status": status,
            "best_val_loss": best, "final_val_loss": best, "steps": 10}  # fmt: skip


ROWS = [
    _row("a0", "baseline", 1e-3, 0, 2.0),
    _row("a1", "baseline", 1e-3, 1, 2.2),
    _row("b0", "baseline", 1e-2, 0, 2.1),
    _row("b1", "baseline", 1e-2, 1, 2.05),
    _row("c0", "z_loss", 1e-3, 0, 1.9),
    _row("c1", "z_loss", 1e-3, 1, 2.3),
    _row("d0", "z_loss", 1e-2, 0, 5.0, status="DIVERGED"),
]


def test_targets_best_confirm_all() -> None:
    assert [r["trial_id"] for r in targets(ROWS, "best")] == ["c0"]
    # each method's best configuration (baseline at 1e-3, z_loss at 1e-3) at every seed it ran with
    assert [r["trial_id"] for r in targets(ROWS, "confirm")] == ["a0", "a1", "c0", "c1"]
    assert [r["trial_id"] for r in targets(ROWS, "all")] == ["a0", "a1", "b0", "b1", "c0", "c1"]  # never DIVERGED


def test_eval_section_is_validated_naming_the_field() -> None:
    spec = SweepSpec.model_validate({"eval": {"tasks": ["lossweep_next_line", "arc_easy"], "limit": 50}})
    assert spec.eval is not None and spec.eval.on == "best" and spec.eval.corpus == "stdlib"
    for bad, field in (
        ({"tasks": []}, "eval.tasks"),
        ({"tasks": ["no spaces"]}, "eval.tasks"),
        ({"tasks": ["a", "a"]}, "eval.tasks"),
        ({"tasks": ["a"], "limit": 0}, "eval.limit"),
        ({"tasks": ["a"], "on": "worst"}, "eval.on"),
        ({"tasks": ["a"], "shots": 5}, "eval.shots"),
    ):
        with pytest.raises(ValidationError) as info:
            SweepSpec.model_validate({"eval": bad})
        assert field in str(info.value)


def test_failed_evaluation_marks_the_trial_and_keeps_its_training_results(tmp_path: Path) -> None:
    sweep_dir = str(tmp_path / "sweep")
    results.write_trials(sweep_dir, ROWS[:2])
    before = results.read_trials(sweep_dir)
    spec = SweepSpec.model_validate({"eval": {"tasks": ["lossweep_next_line"], "on": "all"}})
    records = run_evaluations(spec, sweep_dir)  # no trial manifests here: no checkpoint to evaluate
    assert {r["status"] for r in records.values()} == {"FAILED"}
    after = results.read_trials(sweep_dir)
    assert list(after[EVAL_STATUS_COLUMN]) == ["FAILED", "FAILED"]
    assert all("has no checkpoint" in e for e in after[EVAL_ERROR_COLUMN])
    training = [c for c in before.columns]
    assert after[training].equals(before[training])


def test_scores_merge_into_trials_parquet_columns(tmp_path: Path) -> None:
    sweep_dir = str(tmp_path / "sweep")
    results.write_trials(sweep_dir, ROWS[:2])
    score = {"task": "lossweep_next_line", "metric": "acc", "acc": 0.5, "acc_se": 0.05, "n": 100}
    merge_into_trials(sweep_dir, {"a0": {"status": "DONE", "scores": {"lossweep_next_line": score}}})
    trials = results.read_trials(sweep_dir)
    assert eval_tasks(trials.columns) == ["lossweep_next_line"]
    a0 = trials.set_index("trial_id").loc["a0"]
    assert a0[eval_column("lossweep_next_line", "acc")] == 0.5 and a0[eval_column("lossweep_next_line", "n")] == 100
    assert a0[EVAL_STATUS_COLUMN] == "DONE" and pd.isna(trials.set_index("trial_id").loc["a1"][EVAL_STATUS_COLUMN])


def test_report_shows_accuracy_beside_the_loss_and_per_seed_differences(tmp_path: Path) -> None:
    from search_spaces.reports.report import build_from
    from search_spaces.reports.report_markdown import to_markdown

    sweep_dir = str(tmp_path / "sweep")
    rows = [r for r in ROWS if r["trial_id"] in ("a0", "a1", "c0", "c1")]
    results.write_trials(sweep_dir, rows)

    def record(acc: float) -> dict[str, Any]:
        return {"status": "DONE", "scores": {"t": {"acc": acc, "acc_se": 0.01, "n": 100}}}

    merge_into_trials(sweep_dir, {"a0": record(0.30), "a1": record(0.40), "c0": record(0.35), "c1": record(0.38)})
    report = build_from(sweep_dir, results.read_trials(sweep_dir), None, None, None, None)
    section = report.data["downstream"]
    assert section["tasks"] == ["t"] and len(section["rows"]) == 4
    (paired,) = section["paired"]
    assert paired["method"] == "z_loss" and paired["n"] == 2
    assert [d["difference"] for d in paired["differences"]] == pytest.approx([0.05, -0.02])
    # the interval, p and verdict of an accuracy gain, against scipy directly (higher accuracy is better)
    import numpy as np
    import scipy.stats as sps

    d = np.array([0.05, -0.02])
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert (paired["low"], paired["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired["p"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)
    assert paired["verdict"] == "not resolved"
    text = to_markdown(report)
    assert "## Downstream accuracy" in text and "0.350 ± 0.01" in text and "not resolved" in text
    from search_spaces.reports.report_html import to_html

    html = to_html(report)
    assert 'id="downstream"' in html and "0.350 ± 0.01" in html and "+0.015 [" in html


def test_a_consistent_accuracy_gain_is_better_and_a_loss_worse() -> None:
    from search_spaces.analysis.downstream import paired_task_differences

    def table(gains: list[float]) -> dict:
        rows = []
        for seed, gain in enumerate(gains):
            rows.append({"method": "baseline", "seed": seed, "best_val_loss": 1.0, "scores": {"t": {"acc": 0.3}}})
            rows.append({"method": "z_loss", "seed": seed, "best_val_loss": 1.0, "scores": {"t": {"acc": 0.3 + gain}}})
        return {"tasks": ["t"], "rows": rows}

    (up,) = paired_task_differences(table([0.10, 0.12, 0.11]))
    assert up["verdict"] == "better" and 0 < up["low"] < up["mean"] < up["high"]
    (down,) = paired_task_differences(table([-0.10, -0.12, -0.11]))
    assert down["verdict"] == "worse" and down["high"] < 0
