"""Result files of a sweep dir: schemas, round trips, filters, atomic replacement."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from search_spaces.run import results, storage
from search_spaces.run.callbacks import build_progress
from search_spaces.run.sweep_dir import write_spec_document
from search_spaces.spec.sweep_spec import SweepSpec


def _row(tid: str, status: str, best: float | None, **kw: object) -> dict[str, object]:
    return {"trial_id": tid, "method": "baseline", "lr": 1e-3, "seed": 0, "status": status, "best_val_loss": best,
            "final_val_loss": best, "steps": 10, "tokens": 100, **kw}  # fmt: skip


def test_trials_round_trip_with_the_documented_schema(tmp_path: Path) -> None:
    rows = [_row("a", "TERMINATED", 2.5, diverged_step=-1), _row("b", "DIVERGED", None, diverged_step=4,
            diverged_cause="nonfinite_loss", final_val_loss=math.log(257))]  # fmt: skip
    results.write_trials(str(tmp_path), rows)
    table = pq.read_table(tmp_path / "trials.parquet")
    assert table.schema == results.trials_schema()
    df = results.read_trials(tmp_path)
    assert list(df["trial_id"]) == ["a", "b"]
    assert df.loc[1, "status"] == "DIVERGED" and df.loc[1, "diverged_step"] == 4
    assert df["z_loss_weight"].isna().all()


def test_metrics_filters(tmp_path: Path) -> None:
    rows = [results.metric_row(t, {"step": s, "tokens": 10 * s, "val_loss": 3.0 - s / 10, "term_z_loss": 0.1,
                                   "training_iteration": 1, "config": {}, "diverged_cause": ""})
            for t in ("a", "b") for s in (1, 2, 3)]  # fmt: skip
    results.write_metrics(str(tmp_path), rows)
    df = results.read_metrics(tmp_path)
    assert len(df) == 6 and "training_iteration" not in df and "term_z_loss" in df
    one = results.read_metrics(tmp_path, trial_id="b", since_step=1)
    assert list(one["step"]) == [2, 3] and set(one["trial_id"]) == {"b"}


def test_missing_files(tmp_path: Path) -> None:
    assert results.read_progress(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        results.read_trials(tmp_path)
    with pytest.raises(FileNotFoundError):
        results.read_spec(tmp_path)


def test_spec_round_trip(tmp_path: Path) -> None:
    from search_spaces.spec.presets import get_preset

    spec = get_preset("all-methods-tpe")
    write_spec_document(str(tmp_path), spec.model_dump(mode="json"))
    assert results.read_spec(tmp_path) == spec


def test_atomic_replace_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    storage.write_text(target, "1")
    storage.write_text(target, "2")
    assert target.read_text() == "2"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_progress_counts_best_and_eta() -> None:
    spec = SweepSpec.model_validate({"budget": {"steps": 10, "eval_interval": 5}, "lr": [1e-3, 1e-2, 1e-1, 1.0]})
    rows = [_row("a", "TERMINATED", 2.5), _row("b", "DIVERGED", 1.0), _row("c", "RUNNING", 2.0, steps=5)]
    progress = build_progress("s1", spec, rows, status="RUNNING", elapsed_s=30.0)
    assert progress["counts"] == {"PENDING": 1, "RUNNING": 1, "TERMINATED": 1, "STOPPED": 0, "DIVERGED": 1, "ERROR": 0}
    assert progress["total_trials"] == 4
    assert progress["best"]["trial_id"] == "c"  # running trials count; diverged ones never do
    assert progress["eta_s"] == pytest.approx(30.0 * (4 - 2.5) / 2.5)
    final = build_progress("s1", spec, rows, status="SUCCEEDED", elapsed_s=30.0)
    assert final["eta_s"] is None


def test_the_driver_leaves_a_spec_yaml_in_place_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service and ``lossweep sweep run`` write spec.yaml and hand that file to the driver, which then
    does not write it a second time; a spec file from elsewhere is copied in."""
    from search_spaces.run.job import spec_in_place

    sweep = tmp_path / "s"
    sweep.mkdir()
    monkeypatch.chdir(tmp_path)
    assert spec_in_place(str(sweep / "spec.yaml"), str(sweep))
    assert spec_in_place("s/spec.yaml", "./s/")
    (tmp_path / "link").symlink_to(sweep)
    assert spec_in_place("link/spec.yaml", str(sweep))
    assert not spec_in_place(str(tmp_path / "spec.yaml"), str(sweep))
    assert not spec_in_place(str(sweep / "other.yaml"), str(sweep))
    assert not spec_in_place(None, str(sweep))
    assert spec_in_place("s3://bucket/runs/a/spec.yaml", "s3://bucket/runs/a/")
    assert not spec_in_place("s3://bucket/runs/b/spec.yaml", "s3://bucket/runs/a")
