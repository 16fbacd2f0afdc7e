"""search_spaces.report_forwarding inside real Tune trials: every report arrives, in order, and the
trial ends the moment the run returns, however quickly it returns after its last report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray


def _tune(trial: Any, tmp_path: Path, name: str) -> Any:
    from ray import tune

    return tune.Tuner(
        tune.with_resources(trial, {"CPU": 0, "trial_driver": 1}),
        tune_config=tune.TuneConfig(metric="i", mode="max", num_samples=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name=name, verbose=0),
    ).fit()


def test_every_report_reaches_tune_in_order_and_the_trial_ends(ray_connected: Any, tmp_path: Path) -> None:
    def trial(_: dict[str, Any]) -> None:
        from search_spaces.report_forwarding import fit_reporting_to_tune

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
        from search_spaces.report_forwarding import fit_reporting_to_tune

        def fit(callbacks: list[Any]) -> None:
            callbacks[0].after_report(None, [{"i": 0}], None)
            raise ValueError("the run broke")

        fit_reporting_to_tune(fit, poll_s=0.05)

    grid = _tune(trial, tmp_path, "fails")
    assert grid.num_errors == 2
    assert "the run broke" in str(grid[0].error)
    assert grid[0].metrics_dataframe["i"].tolist() == [0]
