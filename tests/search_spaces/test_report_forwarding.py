"""search_spaces.run.report_forwarding inside real Tune trials: every report arrives, in order, and the
trial ends the moment the run returns, however quickly it returns after its last report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray


def _tune(trial: Any, tmp_path: Path, name: str, *, samples: int = 2, reuse: bool = False) -> Any:
    from ray import tune

    return tune.Tuner(
        tune.with_resources(trial, {"CPU": 0, "trial_driver": 1}),
        tune_config=tune.TuneConfig(
            metric="i", mode="max", num_samples=samples, reuse_actors=reuse, max_concurrent_trials=1
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name=name, verbose=0),
    ).fit()


def test_every_report_reaches_tune_in_order_and_the_trial_ends(ray_connected: Any, tmp_path: Path) -> None:
    def trial(_: dict[str, Any]) -> None:
        from search_spaces.run.report_forwarding import fit_reporting_to_tune

        class Checkpoint:
            path = "/runs/x/checkpoint_000004"

        def fit(callbacks: list[Any]) -> dict[str, Any]:
            # A run whose reports come back to back and which returns right after the last one: the
            # timing under which Ray's own forwarding can leave a trial waiting for ever.
            for i in range(6):
                rows = [{"i": i, "rank": 0}, {"i": i, "rank": 1}]
                for callback in callbacks:
                    callback.after_report(None, rows, Checkpoint if i == 5 else None)
            return {"returned": True}

        assert fit_reporting_to_tune(fit, poll_s=0.05) == {"returned": True}

    grid = _tune(trial, tmp_path, "order")
    assert grid.num_errors == 0 and grid.num_terminated == 2
    for result in grid:
        history = result.metrics_dataframe
        assert history["i"].tolist() == list(range(6))
        assert (history["rank"] == 0).all()  # rank 0's row stands for the run
        assert history["checkpoint_path"].iloc[-1] == "/runs/x/checkpoint_000004"


def test_a_failing_run_fails_the_trial_with_its_error(ray_connected: Any, tmp_path: Path) -> None:
    def trial(_: dict[str, Any]) -> None:
        from search_spaces.run.report_forwarding import fit_reporting_to_tune

        def fit(callbacks: list[Any]) -> None:
            callbacks[0].after_report(None, [{"i": 0}], None)
            raise ValueError("the run broke")

        fit_reporting_to_tune(fit, poll_s=0.05)

    grid = _tune(trial, tmp_path, "fails")
    assert grid.num_errors == 2
    assert "the run broke" in str(grid[0].error)
    assert grid[0].metrics_dataframe["i"].tolist() == [0]


def test_a_reused_trial_actor_keeps_its_queue_and_gets_only_its_own_reports(
    ray_connected: Any, tmp_path: Path
) -> None:
    def trial(_: dict[str, Any]) -> None:
        import os

        from search_spaces.run import report_forwarding

        def fit(callbacks: list[Any]) -> None:
            # A report of some other run left in this process's queue must not reach this trial.
            report_forwarding._queue().put(("another run", {"i": -1, "pid": os.getpid()}))
            queue = id(report_forwarding._queue())
            for i in range(3):
                callbacks[0].after_report(None, [{"i": i, "pid": os.getpid(), "queue": queue}], None)

        report_forwarding.fit_reporting_to_tune(fit, poll_s=0.05)

    grid = _tune(trial, tmp_path, "reused", samples=3, reuse=True)
    assert grid.num_errors == 0 and grid.num_terminated == 3
    histories = [result.metrics_dataframe for result in grid]
    assert all(h["i"].tolist() == [0, 1, 2] for h in histories)
    assert len({int(h["pid"].iloc[0]) for h in histories}) == 1  # one trial actor ran all three
    assert len({int(h["queue"].iloc[0]) for h in histories}) == 1  # and one queue served them
