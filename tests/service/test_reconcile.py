"""How a sweep's end is read from Ray's job status and the driver's progress.json, and how a driver
stopped before it could write its end gets it recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search_spaces.run.sweep_dir import mark_ended, read_progress
from service.models import Sweep, SweepStatus
from service.ray_client import JobInfo
from service.reconcile import final_status


def job(status: str) -> JobInfo:
    return JobInfo(submission_id="lossweep-x", status=status, message="", start_time=None, end_time=None, metadata={})


@pytest.mark.parametrize(
    ("job_status", "driver", "cancel_requested", "expected"),
    [
        ("SUCCEEDED", "SUCCEEDED", False, SweepStatus.SUCCEEDED),
        ("SUCCEEDED", None, False, SweepStatus.SUCCEEDED),
        ("SUCCEEDED", "FAILED", False, SweepStatus.FAILED),  # the driver's word wins
        ("FAILED", "RUNNING", False, SweepStatus.FAILED),
        ("FAILED", None, True, SweepStatus.CANCELLED),  # killed on our request
        ("STOPPED", "RUNNING", True, SweepStatus.CANCELLED),
        ("STOPPED", None, False, SweepStatus.CANCELLED),  # stopped from the dashboard
    ],
)
def test_final_status(job_status: str, driver: str | None, cancel_requested: bool, expected: SweepStatus) -> None:
    sweep = Sweep(id="x", cancel_requested=cancel_requested)
    assert final_status(sweep, job(job_status), driver) is expected


def test_mark_ended_records_the_end_once(tmp_path: Path) -> None:
    (tmp_path / "progress.json").write_text(json.dumps({"status": "RUNNING", "eta_s": 10.0, "counts": {"RUNNING": 1}}))
    mark_ended(str(tmp_path), "CANCELLED")
    progress = read_progress(str(tmp_path))
    assert progress is not None and progress["status"] == "CANCELLED" and progress["eta_s"] is None
    assert progress["counts"] == {"RUNNING": 1}  # the record of what ran is kept
    mark_ended(str(tmp_path), "FAILED")  # a final status is never overwritten
    assert read_progress(str(tmp_path))["status"] == "CANCELLED"  # type: ignore[index]
    mark_ended(str(tmp_path / "missing"), "FAILED")  # no progress yet: nothing to do
    assert not (tmp_path / "missing").exists()


def test_unreadable_progress_is_none(tmp_path: Path) -> None:
    (tmp_path / "progress.json").write_text("{half")
    assert read_progress(str(tmp_path)) is None
