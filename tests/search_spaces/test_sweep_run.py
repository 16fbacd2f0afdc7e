"""Real sweeps on the session's local Ray cluster: a grid (the shared ``tiny_sweep_dir``), TPE + ASHA
through ``lossweep sweep run --json``, and an interrupted sweep resumed to completion."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from search_spaces.run import results
from search_spaces.spec.sweep_spec import SweepSpec
from tests.fixtures.sweeps import HUGE_LR, TINY_GRID, driver_env, run_driver

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _check_consistent(sweep_dir: Path, spec: SweepSpec) -> tuple[Any, Any, dict[str, Any]]:
    """What every finished sweep dir must satisfy; returns (trials, metrics, progress)."""
    trials = results.read_trials(sweep_dir)
    metrics = results.read_metrics(sweep_dir)
    progress = results.read_progress(sweep_dir)
    assert progress is not None and progress["status"] == "SUCCEEDED"
    assert trials["trial_id"].is_unique and len(trials) == spec.num_trials() == progress["total_trials"]
    assert set(metrics["trial_id"]) <= set(trials["trial_id"])
    counts = trials["status"].value_counts().to_dict()
    assert {k: v for k, v in progress["counts"].items() if v} == counts
    for row in trials.to_dict("records"):
        mine = metrics[metrics["trial_id"] == row["trial_id"]].sort_values("step")
        assert mine["step"].is_unique, f"duplicate reports for {row['trial_id']}"
        assert row["steps"] == mine["step"].max() and row["tokens"] == mine["tokens"].max()
        assert row["final_val_loss"] == pytest.approx(mine["val_loss"].iloc[-1])
        assert row["vocab_size"] == 257 and row["config_hash"]
        assert (sweep_dir / "trials" / row["trial_id"] / "manifest.json").is_file()
        # result.json marks a trial whose Train run returned; ASHA ends STOPPED ones from outside.
        assert (sweep_dir / "trials" / row["trial_id"] / "result.json").is_file() == (row["status"] != "STOPPED")
        healthy = mine[mine["diverged"] == 0]
        if row["status"] == "DIVERGED":
            assert row["diverged_step"] >= 0 and row["diverged_cause"]
            assert mine["diverged"].iloc[-1] == 1
        else:
            assert row["diverged_step"] == -1 and not row["diverged_cause"]
            assert row["best_val_loss"] == pytest.approx(healthy["val_loss"].min())
            assert row["best_step"] == healthy.loc[healthy["val_loss"].idxmin(), "step"]
            finished = row["steps"] == spec.total_steps()
            assert row["status"] == ("TERMINATED" if finished else "STOPPED")
        if row["status"] == "TERMINATED":  # the test split, evaluated once at the end
            assert row["test_tokens"] >= spec.test_tokens() and row["test_ce_se"] > 0
            assert row["test_ce"] == pytest.approx(mine["test_ce"].iloc[-1]) and mine["test_ce"].iloc[:-1].isna().all()
            if spec.data.eval_tokens > spec.data.seq_len:  # one validation window has no spread to measure
                assert mine["val_ce_se"].notna().all()
        else:  # a trial that did not finish has no test result
            assert math.isnan(row["test_ce"]) and math.isnan(row["test_ce_se"])
    ok = trials[~trials["status"].isin(["DIVERGED", "ERROR"])]
    best = ok.loc[ok["best_val_loss"].idxmin()]
    assert progress["best"]["trial_id"] == best["trial_id"]
    assert progress["best"]["val_loss"] == pytest.approx(best["best_val_loss"])
    assert progress["tokens"] == int(trials["tokens"].sum())
    assert results.read_spec(sweep_dir) == spec
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert manifest["spec_hash"] and manifest["versions"]["ray"]
    # What only the workers know reaches the sweep's manifest through the manifests of trials whose run
    # returned; a sweep whose every trial ASHA stopped has none to learn it from.
    if (trials["status"] != "STOPPED").any():
        assert manifest["corpus_hash"]
        assert set(manifest["splits"]) == {"train", "val", "test"} and all(manifest["splits"].values())
    assert manifest["protocol"]["test_tokens"] == spec.test_tokens() and manifest["protocol"]["sampling"] == "epoch"
    return trials, metrics, progress


def test_tiny_grid_sweep_with_a_diverging_lr(tiny_sweep_dir: Path) -> None:
    spec = SweepSpec.model_validate(TINY_GRID)
    trials, _, progress = _check_consistent(tiny_sweep_dir, spec)
    assert sorted(zip(trials["method"], trials["lr"], strict=True)) == sorted(
        (m, lr) for m in ("baseline", "mu_centering") for lr in (3e-3, HUGE_LR)
    )
    diverged = trials[trials["status"] == "DIVERGED"]
    assert set(diverged["lr"]) == {HUGE_LR} and len(diverged) == 2
    assert progress["counts"]["DIVERGED"] == 2 and progress["counts"]["TERMINATED"] == 2
    assert diverged["best_val_loss"].isna().all()  # no report before divergence: excluded from "best"
    assert all(math.isfinite(v) for v in diverged["final_val_loss"])  # the finite sentinel, never NaN
    assert progress["best"]["params"]["lr"] == 3e-3
    assert not (tiny_sweep_dir / "optuna.db").exists()  # grids are explicit trial lists


TPE_ASHA: dict[str, Any] = {
    "name": "tiny-tpe",
    "model": {"preset": "tiny"},
    "data": {"corpus": "stdlib", "seq_len": 32, "batch_size": 4, "eval_tokens": 32, "test_tokens": 64},
    "budget": {"steps": 16, "warmup_steps": 2, "eval_interval": 4},
    "methods": ["baseline", "simreg"],
    "lr": {"distribution": "loguniform", "low": 1e-3, "high": 3e-2},
    "coefficients": {"simreg_weight": {"distribution": "loguniform", "low": 1e-3, "high": 1.0}},
    "search": {"algorithm": "tpe", "num_samples": 4, "startup_trials": 2, "seed": 1},
    "scheduler": {"name": "asha", "grace_period": 256, "reduction_factor": 2},
    "resources": {"workers": 1, "cpus_per_worker": 0.5},
    "max_concurrent_trials": 2,
}


def test_tpe_asha_sweep_through_the_cli(ray_cluster: Any, tmp_path: Path) -> None:
    import optuna

    spec_path = tmp_path / "tpe.yaml"
    spec_path.write_text(yaml.safe_dump(TPE_ASHA))
    sweep_dir = tmp_path / "tpe-sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "lossweep.cli.main", "sweep", "run", str(spec_path), "--out", str(sweep_dir), "--json",
         "--set", "name=tiny-tpe-cli"],
        env=driver_env(ray_cluster), capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["sweep_dir"] == str(sweep_dir) and summary["status"] == "SUCCEEDED"
    assert sum(summary["counts"].values()) == 4 and summary["best"]["method"] in ("baseline", "simreg")

    spec = SweepSpec.model_validate({**TPE_ASHA, "name": "tiny-tpe-cli"})
    trials, _, _ = _check_consistent(sweep_dir, spec)
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    assert all(1e-3 <= lr <= 3e-2 for lr in trials["lr"])
    # Conditional space: only SimReg trials carry a SimReg weight.
    assert trials[trials["method"] == "baseline"]["simreg_weight"].isna().all()
    assert trials[trials["method"] == "simreg"]["simreg_weight"].notna().all()
    stopped = trials[trials["status"] == "STOPPED"]
    assert (stopped["tokens"] < spec.total_tokens()).all()
    study = optuna.load_study(study_name="lossweep-tpe-sweep", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert len(study.trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_interrupted_sweep_resumes_without_repeating_finished_trials(ray_cluster: Any, tmp_path: Path) -> None:
    spec_doc = {**TINY_GRID, "name": "resume", "methods": ["baseline"], "lr": [1e-3, 2e-3, 3e-3],
                "budget": {"steps": 8, "warmup_steps": 1, "eval_interval": 4}, "max_concurrent_trials": 1}  # fmt: skip
    spec = SweepSpec.model_validate(spec_doc)
    sweep_dir = tmp_path / "resume-sweep"
    spec_path = tmp_path / "resume.yaml"
    spec_path.write_text(yaml.safe_dump(spec_doc))
    env = driver_env(ray_cluster)
    driver = subprocess.Popen(
        [sys.executable, "-m", "search_spaces.run.job", str(spec_path), str(sweep_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    finished: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            try:
                trials = results.read_trials(sweep_dir)
            except (FileNotFoundError, OSError):
                trials = None
            if trials is not None and (trials["status"] == "TERMINATED").any():
                done = trials[trials["status"] == "TERMINATED"]["trial_id"]
                finished = {t: (sweep_dir / "trials" / t / "manifest.json").stat().st_mtime_ns for t in done}
                break
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver's own session: nothing else is touched
        driver.wait(timeout=30)
    assert finished, "no trial finished before the deadline"
    assert results.read_progress(sweep_dir)["status"] == "RUNNING"  # killed: nobody wrote the end
    before = results.read_metrics(sweep_dir)

    proc = run_driver(spec_doc, sweep_dir, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "resuming sweep" in proc.stdout
    trials, metrics, _ = _check_consistent(sweep_dir, spec)
    assert set(trials["status"]) == {"TERMINATED"}
    for trial_id, mtime in finished.items():
        # fit() writes the trial manifest when the trial starts: unchanged means it never ran again.
        assert (sweep_dir / "trials" / trial_id / "manifest.json").stat().st_mtime_ns == mtime
        old = before[before["trial_id"] == trial_id].reset_index(drop=True)
        new = metrics[metrics["trial_id"] == trial_id].reset_index(drop=True)
        assert old[["step", "val_loss"]].equals(new[["step", "val_loss"]])
    assert json.loads((sweep_dir / "manifest.json").read_text()).get("resumed_at")
    _same_losses_as_a_fresh_process(sweep_dir, metrics)


def _same_losses_as_a_fresh_process(sweep_dir: Path, metrics: Any) -> None:
    """Trials that ran in a reused trial actor (a grid without a scheduler, one trial at a time) and as
    lean Train runs report exactly what the same config trains to in a process of its own."""
    import torch

    from trainables.train.config import TrainConfig
    from trainables.train.engine import TrainingRun

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a trial's worker holds half a CPU: one torch thread
    try:
        for trial_id in metrics["trial_id"].unique():
            manifest = json.loads((sweep_dir / "trials" / trial_id / "manifest.json").read_text())
            expected: list[dict[str, Any]] = []
            TrainingRun(TrainConfig.from_dict(manifest["config"])).run(expected.append)
            got = metrics[metrics["trial_id"] == trial_id].sort_values("step")
            assert got["step"].tolist() == [r["step"] for r in expected]
            assert got["val_loss"].tolist() == pytest.approx([r["val_loss"] for r in expected], rel=1e-6)
    finally:
        torch.set_num_threads(threads)


def test_a_sweep_over_two_model_sizes_runs_each_at_its_own_size(ray_cluster: Any, tmp_path: Path) -> None:
    from search_spaces.reports.render import render
    from trainables.train.manifest import CONFIG_KEY

    doc = {**TINY_GRID, "name": "two-sizes", "model": {"preset": ["tiny", "cpu-small"]},
           "methods": ["baseline", "z_loss"], "lr": [3e-3], "budget": {"steps": 4, "eval_interval": 2}}  # fmt: skip
    spec = SweepSpec.model_validate(doc)
    sweep_dir = tmp_path / "sweep"
    proc = run_driver(doc, sweep_dir, env=driver_env(ray_cluster), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials, _, _ = _check_consistent(sweep_dir, spec)
    assert sorted(trials.groupby(["model", "method"]).size().to_dict().items()) == [
        (("cpu-small", "baseline"), 1), (("cpu-small", "z_loss"), 1), (("tiny", "baseline"), 1), (("tiny", "z_loss"), 1)
    ]  # fmt: skip
    params = {}
    for row in trials.to_dict("records"):
        manifest = json.loads((sweep_dir / "trials" / row["trial_id"] / "manifest.json").read_text())
        assert manifest[CONFIG_KEY]["model"] == row["model"]
        params[row["model"]] = manifest["num_params"]
    assert params["cpu-small"] > 5 * params["tiny"]
    html = Path(render(str(sweep_dir), formats=["html"])["html"]).read_text()
    assert 'id="sizes"' in html and "cpu-small (" not in html and "<td>tiny</td>" in html
