"""A real search + confirm sweep on the session's local Ray cluster: the best configuration of every
method re-trained on fresh seeds in the same job and sweep dir, and the report's intervals from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from search_spaces.analysis.confirm import confirm_configurations
from search_spaces.reports.report import build
from search_spaces.run import results
from search_spaces.run.sweep_dir import CONFIRM_STAGE, SEARCH_STAGE
from search_spaces.spec.sweep_spec import SweepSpec
from tests.fixtures.sweeps import TINY_GRID, driver_env, run_driver

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1500)]

# 2 search trials (one learning rate, seed 0) + 2 methods x 2 fresh seeds = 6 trials, 8 steps each.
SEARCH_CONFIRM: dict[str, Any] = {
    **TINY_GRID,
    "name": "search-confirm",
    "lr": [3e-3],
    "budget": {"steps": 8, "warmup_steps": 1, "eval_interval": 4},
    "seeds": [0],
    "confirm": {"seeds": [1, 2], "top_k": 1},
}


def _run_until_confirm_starts(spec_path: Path, sweep_dir: Path, env: dict[str, str]) -> dict[str, int]:
    """Runs the driver until the confirm stage has started, then kills it; returns the search trials'
    manifest times (a trial that runs again rewrites its manifest)."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "search_spaces.run.job", str(spec_path), str(sweep_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and driver.poll() is None:
            progress = results.read_progress(sweep_dir) if sweep_dir.exists() else None
            if progress is not None and progress.get("stage") == CONFIRM_STAGE:
                break
            time.sleep(0.5)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver's own session: nothing else is touched
        driver.wait(timeout=30)
    trials = results.read_trials(sweep_dir)
    search = trials[trials["stage"] == SEARCH_STAGE]
    assert len(search) == 2 and set(search["status"]) == {"TERMINATED"}
    return {t: (sweep_dir / "trials" / t / "manifest.json").stat().st_mtime_ns for t in search["trial_id"]}


def test_search_then_confirm_in_one_job_resumed_in_the_confirm_stage(ray_cluster: Any, tmp_path: Path) -> None:
    spec = SweepSpec.model_validate(SEARCH_CONFIRM)
    sweep_dir = tmp_path / "search-confirm"
    spec_path = tmp_path / "search-confirm.yaml"
    spec_path.write_text(json.dumps(SEARCH_CONFIRM))
    env = driver_env(ray_cluster)
    searched = _run_until_confirm_starts(spec_path, sweep_dir, env)

    proc = run_driver(SEARCH_CONFIRM, sweep_dir, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "resuming the confirm stage (4 trials)" in proc.stdout
    for trial_id, mtime in searched.items():  # the search never runs again
        assert (sweep_dir / "trials" / trial_id / "manifest.json").stat().st_mtime_ns == mtime

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
