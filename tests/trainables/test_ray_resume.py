"""A Train worker killed mid-run: Ray restarts the worker group and the run resumes from its last
checkpoint (not from step 0) and completes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trainables.train.config import DataConfig, OptimConfig, TrainConfig
from trainables.train.trainer import Resources, fit

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = 120
EVAL_INTERVAL = 10
CHECKPOINT_INTERVAL = 20


def _events(progress: Path) -> list[dict[str, Any]]:
    if not progress.exists():
        return []
    events = []
    for line in progress.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut short by the kill
    return events


def _registered_step(snapshot: Path) -> int:
    """Step of the newest checkpoint Ray Train has registered, 0 if none yet."""
    try:
        results = json.loads(snapshot.read_text())["checkpoint_results"]
    except (OSError, ValueError, KeyError):
        return 0
    return max((int(r["metrics"]["step"]) for r in results), default=0)


def test_killed_worker_resumes_from_last_checkpoint(
    train_connected: Any, train_data_cache: str, tmp_path: Path
) -> None:
    config = TrainConfig(
        model="tiny",
        data=DataConfig(seq_len=32, batch_size=4, eval_tokens=32, test_tokens=64, cache_dir=train_data_cache),
        optim=OptimConfig(lr=3e-3, warmup_steps=2),
        steps=STEPS,
        eval_interval=EVAL_INTERVAL,
        checkpoint_interval=CHECKPOINT_INTERVAL,
        checkpoint_keep=2,
    )
    progress = tmp_path / "progress.jsonl"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["final"] = fit(
                config,
                Resources(workers=2),
                name="resume",
                storage_path=tmp_path / "runs",
                max_failures=1,
                progress_file=progress,
            )
        except BaseException as exc:  # surfaced by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    # Wait until Ray Train has registered a checkpoint (it is in the run's checkpoint-manager
    # snapshot; a checkpoint still on its way to the controller would be lost with the worker), then
    # kill rank 0's process.
    snapshot = tmp_path / "runs" / "resume" / "checkpoint_manager_snapshot.json"
    victim: int | None = None
    registered = 0
    deadline = time.monotonic() + 300
    while victim is None and thread.is_alive() and time.monotonic() < deadline:
        registered = _registered_step(snapshot)
        started = [e for e in _events(progress) if e["event"] == "started"]
        if started and registered >= CHECKPOINT_INTERVAL:
            victim = started[-1]["pid"]
        else:
            time.sleep(0.05)
    assert victim is not None, f"no checkpoint registered before the run ended: {outcome}"
    assert registered < STEPS, "the run finished before it could be killed"
    os.kill(victim, signal.SIGKILL)

    thread.join(timeout=400)
    assert not thread.is_alive(), "the run did not finish after the restart"
    assert "error" not in outcome, outcome.get("error")
    final = outcome["final"]
    assert final["step"] == STEPS and final["diverged"] == 0

    events = _events(progress)
    starts = [e for e in events if e["event"] == "started"]
    assert len(starts) == 2 and not starts[0]["resumed"] and starts[1]["resumed"]
    assert starts[1]["pid"] != victim
    resumed_at = starts[1]["step"]
    assert resumed_at >= registered and resumed_at % CHECKPOINT_INTERVAL == 0  # not from step 0
    after = [e["step"] for e in events[events.index(starts[1]) :] if e["event"] == "report"]
    assert after == list(range(resumed_at + EVAL_INTERVAL, STEPS + 1, EVAL_INTERVAL))
