"""A real search + confirm sweep on the session's local Ray cluster: the best configuration of every
method re-trained on fresh seeds in the same job and sweep dir, and the report's intervals from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from search_spaces.analysis.confirm import confirm_configurations
from search_spaces.reports.report import build
from search_spaces.run import results
from search_spaces.run.sweep_dir import CONFIRM_STAGE, SEARCH_STAGE
from search_spaces.spec.sweep_spec import SweepSpec
from tests.fixtures.sweeps import TINY_GRID, driver_env, run_driver

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# 2 search trials (one learning rate, seed 0) + 2 methods x 2 fresh seeds = 6 trials, 8 steps each.
SEARCH_CONFIRM: dict[str, Any] = {
    **TINY_GRID,
    "name": "search-confirm",
    "lr": [3e-3],
    "budget": {"steps": 8, "warmup_steps": 1, "eval_interval": 4},
    "seeds": [0],
    "confirm": {"seeds": [1, 2], "top_k": 1},
}


def test_search_then_confirm_in_one_job(ray_cluster: Any, tmp_path: Path) -> None:
    spec = SweepSpec.model_validate(SEARCH_CONFIRM)
    sweep_dir = tmp_path / "search-confirm"
    proc = run_driver(SEARCH_CONFIRM, sweep_dir, env=driver_env(ray_cluster), timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "starting the confirm stage (4 trials)" in proc.stdout

    trials = results.read_trials(sweep_dir)
    progress = results.read_progress(sweep_dir)
    assert progress is not None and progress["status"] == "SUCCEEDED" and progress["stage"] == CONFIRM_STAGE
    assert len(trials) == spec.num_trials() == progress["total_trials"] == 6
    assert trials["trial_id"].is_unique and set(trials["status"]) == {"TERMINATED"}
    search = trials[trials["stage"] == SEARCH_STAGE]
    confirm = trials[trials["stage"] == CONFIRM_STAGE]
    assert sorted(search["seed"]) == [0, 0] and sorted(confirm["seed"]) == [1, 1, 2, 2]
    # Each method's best search configuration, re-run on the fresh seeds only.
    chosen = confirm_configurations(search, spec.methods, top_k=1)
    expected = sorted((c["method"], c["lr"], seed) for c in chosen for seed in (1, 2))
    assert sorted(zip(confirm["method"], confirm["lr"], confirm["seed"], strict=True)) == expected

    report = build(str(sweep_dir)).data
    table = report["confirm"]
    assert {c["method"] for c in table["configs"]} == {"baseline", "mu_centering"}
    for config in table["configs"]:
        assert config["n"] == 2 and config["low"] <= config["mean"] <= config["high"]
        assert set(config["seeds"]) == {"1", "2"}
    (compared,) = [c for c in table["configs"] if c["comparison"] is not None]
    assert compared["method"] == "mu_centering" and compared["comparison"]["n"] == 2
    assert compared["comparison"]["verdict"] in ("better", "worse", "not resolved")
    assert table["best"]["n"] == 2
    json.dumps(report)  # JSON-ready
