"""Tags of exported trial metrics, the progress line, and both being harmless outside Ray."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from trainables.train.progress_log import log_progress, progress_line
from trainables.train.ray_metrics import (
    DIVERGED_TOTAL,
    STANDALONE_SWEEP,
    SWEEP_ENV,
    TRAIN_LOSS,
    TRIAL_ENV,
    TRIAL_METRICS,
    TrialMetrics,
    TrialTags,
    resolve_tags,
)


@pytest.mark.parametrize(
    ("run_name", "env", "expected"),
    [
        # A sweep names each trial's Train run <sweep id>-<Tune trial id>; sweep ids hold dashes.
        ("demo-3f9a2c1b-a1b2c3d4", {}, ("demo-3f9a2c1b", "a1b2c3d4")),
        ("grid-7-0c1d2_00004", {}, ("grid-7", "0c1d2_00004")),  # grid/random trial ids
        # With the sweep id in the environment, whatever follows it is the trial.
        ("demo-3f9a2c1b-trial-7", {SWEEP_ENV: "demo-3f9a2c1b"}, ("demo-3f9a2c1b", "trial-7")),
        ("anything", {SWEEP_ENV: "s1", TRIAL_ENV: "t9"}, ("s1", "t9")),
        # A run named after the spec's name, in a job that knows the sweep id.
        ("demo-a1b2c3d4", {SWEEP_ENV: "demo-3f9a2c1b"}, ("demo-3f9a2c1b", "a1b2c3d4")),
        ("other-run", {SWEEP_ENV: "demo-3f9a2c1b"}, ("demo-3f9a2c1b", "other-run")),
        # `lossweep train` runs are not part of a sweep.
        ("train-20261124-081500", {}, (STANDALONE_SWEEP, "train-20261124-081500")),
        (None, {}, (STANDALONE_SWEEP, "unnamed")),
    ],
)
def test_tags_from_run_name_and_environment(
    run_name: str | None, env: dict[str, str], expected: tuple[str, str]
) -> None:
    tags = resolve_tags(run_name, method="mu_loss", env=env)
    assert (tags.sweep, tags.trial, tags.method) == (*expected, "mu_loss")


def test_explicit_tags_win() -> None:
    tags = resolve_tags("demo-a1b2c3d4", method="z_loss", sweep="s", trial="t", env={SWEEP_ENV: "x", TRIAL_ENV: "y"})
    assert tags == TrialTags(sweep="s", trial="t", method="z_loss")


def test_prometheus_names_follow_ray() -> None:
    # Ray 2.60's metrics agent prefixes user metrics with ray_ and counters end in _total
    # (checked against a real scrape in tests/e2e/test_ray_metrics.py).
    assert TRAIN_LOSS.prometheus_name == "ray_lossweep_trial_train_loss"
    assert DIVERGED_TOTAL.prometheus_name == "ray_lossweep_trials_diverged_total"
    assert len({spec.name for spec in TRIAL_METRICS}) == len(TRIAL_METRICS)
    assert all(set(spec.tag_keys) >= {"sweep", "trial", "method"} for spec in TRIAL_METRICS)


def test_record_outside_ray_does_nothing_and_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "from trainables.train.ray_metrics import TrialMetrics\n"
        "m = TrialMetrics.for_run('demo-a1b2c3d4', method='baseline')\n"
        "m.record({'val_loss': 3.0, 'diverged': 1})\n"
        "from search_spaces.run.ray_metrics import export_progress\n"
        "export_progress({'sweep_id': 's', 'counts': {'RUNNING': 1}})\n"
        "assert not m.enabled and 'ray' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_values_that_are_not_finite_numbers_are_skipped() -> None:
    metrics = TrialMetrics(TrialTags("s", "t", "baseline"), enabled=True)
    metrics.record({"val_loss": object(), "train_loss": float("nan"), "diverged": None})  # no Ray call made
    assert metrics.enabled


def test_progress_line_reads_well() -> None:
    row = {"step": 150, "tokens": 76800, "val_loss": 3.41213, "train_loss": 3.5, "lr": 0.00284}
    row |= {"tokens_per_s": 3100.0, "diverged": 0}
    assert progress_line(row, run="demo-a1b2c3d4", total_steps=400) == (
        "[lossweep demo-a1b2c3d4] step 150/400 tokens 76.8k val_ce 3.4121 train_ce 3.5000 lr 2.84e-03"
        " 3.1k tok/s diverged no"
    )


def test_progress_line_of_a_diverged_report_and_missing_values() -> None:
    row = {"step": 60, "val_loss": 5.545, "diverged": 1, "diverged_step": 60, "diverged_cause": "nonfinite_loss"}
    stream = io.StringIO()
    line = log_progress(row, stream=stream)
    assert stream.getvalue() == line + "\n"
    assert line == (
        "[lossweep] step 60 tokens - val_ce 5.5450 train_ce - lr - - tok/s diverged at step 60 (nonfinite_loss)"
    )
