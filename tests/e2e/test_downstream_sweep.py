"""End to end: a tiny sweep with ``eval:`` on the local task, run by the real driver on a real local Ray,
then ``lossweep eval`` on one of its trials (and on a model shape the checkpoint does not fit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from search_spaces.run import results
from search_spaces.run.sweep_dir import EVAL_STATUS_COLUMN, eval_column, eval_tasks, trial_eval_path
from tests.fixtures.sweeps import TINY_GRID, driver_env, run_driver

pytest.importorskip("lm_eval")

TASK = "lossweep_next_line"
LIMIT = 8
SPEC: dict[str, Any] = {
    **TINY_GRID,
    "name": "tiny-eval",
    "methods": ["baseline", "z_loss"],
    "lr": 3e-3,
    "coefficients": {"z_loss_weight": 1e-4},
    "eval": {"tasks": [TASK], "limit": LIMIT, "on": "all", "batch_size": 16},
}


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_evaluates_its_trials_and_lossweep_eval_reads_one(ray_cluster: Any, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "tiny-eval"
    proc = run_driver(SPEC, sweep_dir, env=driver_env(ray_cluster), timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "evaluated 2 of 2 trial(s)" in proc.stdout
    trials = results.read_trials(sweep_dir)
    assert eval_tasks(trials.columns) == [TASK]
    assert list(trials[EVAL_STATUS_COLUMN]) == ["DONE", "DONE"]
    assert trials[eval_column(TASK, "acc")].between(0, 1).all()
    assert (trials[eval_column(TASK, "acc_se")] > 0).all() and (trials[eval_column(TASK, "n")] == LIMIT).all()
    assert set(trials["status"]) == {"TERMINATED"} and trials["best_val_loss"].notna().all()
    trial_id = str(trials["trial_id"].iloc[0])
    recorded = json.loads(Path(trial_eval_path(str(sweep_dir), trial_id)).read_text())
    assert recorded["status"] == "DONE" and recorded["scores"][TASK]["n"] == LIMIT

    cli = [sys.executable, "-m", "lossweep.cli.main", "eval", str(sweep_dir / "trials" / trial_id)]
    ok = subprocess.run([*cli, "--tasks", TASK, "--limit", str(LIMIT), "--json"],
                        capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    scores = json.loads(ok.stdout)["scores"]
    # the same checkpoint, questions and harness: the sweep's score again
    assert scores[TASK]["acc"] == pytest.approx(float(trials[eval_column(TASK, "acc")].iloc[0]))

    wrong = subprocess.run([*cli, "--preset", "cpu-small"], capture_output=True, text=True, timeout=300, check=False)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    (line,) = wrong.stderr.strip().splitlines()
    assert line.startswith("error: checkpoint ") and "does not fit model 'cpu-small'" in line
