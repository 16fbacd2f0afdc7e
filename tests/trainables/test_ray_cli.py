"""``lossweep train`` end to end against the session's Ray cluster, and its flag errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lossweep.local_cluster import LocalCluster

LOSSWEEP = [sys.executable, "-m", "lossweep.cli.main"]


def _train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOSSWEEP, "train", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.ray
@pytest.mark.slow
def test_train_json_on_ray(train_cluster: LocalCluster, tmp_path: Path) -> None:
    # The session fixture put RAY_AUTH_* for its cluster into this environment; the child inherits it.
    out = tmp_path / "run"
    proc = _train(
        "--preset", "tiny", "--steps", "20", "--seq-len", "32", "--batch-size", "4", "--eval-interval", "10",
        "--eval-tokens", "32", "--test-tokens", "64", "--workers", "2", "--checkpoint-interval", "10",
        "--address", train_cluster.address, "--out", str(out), "--name", "cli", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("val_loss", "train_loss", "tokens", "steps", "diverged", "diverged_step", "diverged_cause",
                "tokens_per_s"):  # fmt: skip
        assert key in summary, key
    assert summary["steps"] == 20 and summary["tokens"] == 20 * 4 * 32
    assert summary["diverged"] == 0 and summary["diverged_step"] == -1 and summary["diverged_cause"] == ""
    assert math.isfinite(summary["val_loss"]) and summary["tokens_per_s"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["resources"]["workers"] == 2
    assert (out / "progress.jsonl").is_file()
    assert Path(summary["checkpoint_path"]).is_relative_to(out)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--workers", "3", "--batch-size", "4"], "--batch-size"),
        (["--workers", "2", "--batch-size", "8", "--micro-batch", "8"], "--micro-batch"),
        (["--workers", "0"], "--workers"),
        (["--eval-interval", "10", "--checkpoint-interval", "15"], "--checkpoint-interval"),
        (["--gpus", "-1"], "--gpus"),
    ],
)
def test_train_flag_errors(args: list[str], flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSWEEP_HOME", str(tmp_path))  # were a check missed, no cluster of the user's is touched
    proc = _train(*args, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {flag}:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cluster.json").exists()  # rejected before any Ray cluster was started
