"""Hyperparameter importance (Optuna's evaluator on the sweep's trials) and the mechanism against the LR
(each run's last finite diagnostics), checked against closed forms and a slow obvious reference."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from search_spaces.reports.insights import OBJECTIVE, mechanism_vs_lr, param_importance
from search_spaces.reports.plots import DIAGNOSTICS
from tests.search_spaces.synthetic_sweep import VOCAB, curve, trial

L0 = math.log(VOCAB)
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_importance_finds_the_learning_rate_when_only_it_matters() -> None:
    # Loss depends on the LR alone; method and seed change nothing.
    rows = [
        trial(f"{m}-{lr}-{s}", m, lr, 2.0 + (math.log10(lr) + 2) ** 2, seed=s)
        for m in ("baseline", "mu_centering")
        for lr in LRS
        for s in (0, 1)
    ]
    out = param_importance(_frame(rows), L0)
    assert out["objective"] == OBJECTIVE and out["n_trials"] == len(rows) and out["missing"] == []
    ranked = [r["param"] for r in out["overall"]]
    assert ranked[0] == "lr" and set(ranked) == {"lr", "method", "seed"}
    assert out["overall"][0]["importance"] > 0.8
    assert sum(r["importance"] for r in out["overall"]) == pytest.approx(1.0, abs=1e-6)
    assert set(out["per_method"]) == {"baseline", "mu_centering"}
    assert out["per_method"]["baseline"]["importances"][0]["param"] == "lr"
    assert param_importance(_frame(rows), L0) == out  # deterministic: the report depends on the sweep dir alone


def test_importance_within_a_method_sees_its_coefficient() -> None:
    # z-loss: the weight matters a lot, the LR a little (one LR pair only).
    rows = [
        trial(f"z-{w}-{lr}", "z_loss", lr, 2.0 + 3.0 * abs(math.log10(w) + 4) + 0.01 * (lr > 2e-3), z_loss_weight=w)
        for w in (1e-7, 1e-5, 1e-4, 1e-3, 1e-1)
        for lr in (1e-3, 3e-3)
    ]
    out = param_importance(_frame(rows), L0)
    assert out["per_method"]["z_loss"]["importances"][0]["param"] == "z_loss_weight"
    assert "seed" not in {r["param"] for r in out["overall"]}  # one seed: nothing to say about it


def test_importance_counts_diverged_trials_as_ln_v_and_needs_three_trials() -> None:
    rows = [trial("a", "baseline", 1e-3, 2.0), trial("b", "baseline", 1.0, 0.0, status="DIVERGED")]
    out = param_importance(_frame(rows), L0)
    assert out["overall"] == [] and out["n_trials"] == 2
    assert out["missing"] == ["no hyperparameter importance over all trials: 2 finished trial(s); importance needs at "
                              "least 3"]
    rows.append(trial("c", "baseline", 1e-2, 2.1))
    assert [r["param"] for r in param_importance(_frame(rows), L0)["overall"]] == ["lr"]
    assert param_importance(pd.DataFrame(), None)["missing"]


def _reference(trials: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The obvious way: walk each trial's reports in step order, remembering the last finite value seen."""
    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        last: dict[str, Any] = {k: None for k, _ in DIAGNOSTICS}
        for r in sorted((m for m in metrics if m["trial_id"] == t["trial_id"]), key=lambda m: m["step"]):
            for key in last:
                value = r.get(key)
                if value is not None and math.isfinite(value):
                    last[key] = float(value)
        out[t["trial_id"]] = last
    return out


def test_mechanism_takes_each_runs_last_finite_report() -> None:
    trials = [
        trial("b-small", "baseline", 1e-3, 2.2),
        trial("b-large", "baseline", 1.0, 0.0, status="DIVERGED", diverged_step=60),
        trial("c-large", "mu_centering", 1.0, 2.5),
        trial("silent", "z_loss", 1e-2, 2.3, z_loss_weight=1e-4),  # never reported
    ]
    metrics = [r for t in trials[:3] for r in curve(t)]
    # The diverged run's reports after its blow-up are not finite, and arrive out of order.
    for r in metrics:
        if r["trial_id"] == "b-large" and r["step"] >= 60:
            r.update(mu_norm=float("nan"), logits_mean=float("inf"), logits_absmax=float("nan"), log_z_mean=None)
    metrics.reverse()
    out = mechanism_vs_lr(_frame(trials), _frame(metrics), L0)
    rows = {r["trial_id"]: r for r in out["rows"]}
    assert set(rows) == {"b-small", "b-large", "c-large"}
    expected = _reference(trials, metrics)
    for trial_id, row in rows.items():
        for key, _ in DIAGNOSTICS:
            assert row[key] == pytest.approx(expected[trial_id][key], rel=1e-12), (trial_id, key)
    assert rows["b-large"]["diverged"] is True and rows["b-large"]["val_loss"] == pytest.approx(L0)
    assert rows["b-large"]["mu_norm"] is not None and rows["b-large"]["step"] == 100  # last report, NaN or not
    assert rows["c-large"]["mu_norm"] == 0.0 and rows["c-large"]["lr"] == 1.0
    assert out["colors"]["baseline"] and set(out["metrics"]) == {k for k, _ in DIAGNOSTICS}
    assert out["missing"] == []
    assert mechanism_vs_lr(_frame(trials), pd.DataFrame(), L0)["missing"]


def test_markdown_report_has_both_sections(tmp_path: Any) -> None:
    from search_spaces.reports import report
    from search_spaces.reports.report_markdown import to_markdown
    from tests.search_spaces.synthetic_sweep import paper_grid_trials, write_sweep

    md = to_markdown(report.build(str(write_sweep(tmp_path / "s", paper_grid_trials(seeds=(0,))))))
    assert "## Hyperparameter importance" in md and "| lr |" in md
    section = md[md.index("## The mechanism against the learning rate") :].split("\n## ")[0]
    header = next(line for line in section.splitlines() if line.startswith("| method"))
    assert header.count(" | ") == 7  # 8 columns: "max |logit|" is escaped inside the header
    assert "| baseline | 0.3 | 1 | 1 |" in section  # the diverged baseline at the largest LR
