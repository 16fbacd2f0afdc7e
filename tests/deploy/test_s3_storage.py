"""Sweep directories on S3 (``s3://bucket/prefix/<sweep id>``), against a local S3-compatible server
(moto in server mode on a loopback port, reached through ``AWS_ENDPOINT_URL`` as any S3-compatible
store would be). Everything that touches a sweep dir must read and write it there exactly as on a
local disk: the service's own files, the results readers, and the reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml

from search_spaces.run import storage
from search_spaces.run import sweep_dir as contract
from tests.deploy.conftest import S3Server
from tests.search_spaces.synthetic_sweep import paper_grid_trials, write_sweep


def _upload(local: Path, uri: str) -> str:
    """Copies a local sweep dir to ``uri`` (as a driver on another machine would have written it)."""
    fs, root = pafs.FileSystem.from_uri(uri)
    fs.create_dir(root, recursive=True)
    pafs.copy_files(str(local), root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return uri


def _object_names(uri: str) -> set[str]:
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1 :] for i in infos if i.is_file}


@pytest.fixture
def local_sweep(tmp_path: Path) -> Path:
    from search_spaces.spec.presets import get_preset

    spec = get_preset("oec-lr-sensitivity").model_dump(mode="json")
    return write_sweep(tmp_path / "grid-s3", paper_grid_trials(seeds=(0,)), spec=spec)


@pytest.fixture
def s3_sweep(s3_env: S3Server, local_sweep: Path, request: pytest.FixtureRequest) -> str:
    return _upload(local_sweep, s3_env.uri("sweeps", request.node.name.replace("[", "-").rstrip("]"), "grid-s3"))


def test_service_writes_and_reads_its_files_on_s3(s3_env: S3Server) -> None:
    sweep_dir = storage.join(s3_env.uri("sweeps"), "svc-1")
    assert sweep_dir == s3_env.uri("sweeps", "svc-1")
    assert contract.read_progress(sweep_dir) is None  # nothing written yet: no error
    assert contract.read_optional(storage.join(sweep_dir, "nothing")) is None
    spec = {"name": "svc-1", "methods": ["baseline", "z_loss"], "lr": [1e-3, 3e-3]}
    path = contract.write_spec_document(sweep_dir, spec)
    assert yaml.safe_load(contract.read_optional(path) or b"") == spec
    progress = {"sweep_id": "svc-1", "status": "RUNNING", "eta_s": 10.0}
    storage.write_bytes(storage.join(sweep_dir, "progress.json"), json.dumps(progress).encode())
    contract.mark_ended(sweep_dir, "CANCELLED")
    ended = contract.read_progress(sweep_dir)
    assert ended is not None and ended["status"] == "CANCELLED" and ended["eta_s"] is None
    assert _object_names(sweep_dir) == {"spec.yaml", "progress.json"}


def test_storage_helpers_on_s3(s3_env: S3Server) -> None:
    root = s3_env.uri("sweeps", "helpers") + "/"
    assert storage.is_uri(root) and not storage.is_uri("/tmp/x") and not storage.is_uri("file:///tmp/x")
    assert storage.normalize(root) == s3_env.uri("sweeps", "helpers")
    sweep_dir = storage.join(storage.normalize(root), "sweep-7")
    assert storage.basename(sweep_dir) == "sweep-7"  # the sweep id, as the driver derives it
    storage.makedirs(sweep_dir)
    target = storage.join(sweep_dir, "trials", "t-1", "manifest.json")
    assert not storage.exists(target)
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(target)
    storage.write_text(target, '{"a": 1}')
    storage.write_text(target, '{"a": 2}')  # replaced whole
    assert storage.exists(target)
    assert json.loads(storage.read_bytes(target)) == {"a": 2}
    assert "trials/t-1/manifest.json" in _object_names(sweep_dir)


def test_results_writers_round_trip_on_s3(s3_env: S3Server) -> None:
    from search_spaces.run import results

    sweep_dir = s3_env.uri("sweeps", "writers")
    trials = [
        {"trial_id": "t1", "method": "z_loss", "lr": 1e-3, "z_loss_weight": 1e-4, "seed": 0, "status": "RUNNING",
         "final_val_loss": 3.1, "best_val_loss": 3.0, "best_step": 10, "steps": 20, "tokens": 2048},
        {"trial_id": "t2", "method": "baseline", "lr": 1e-1, "seed": 0, "status": "DIVERGED",
         "final_val_loss": 5.545, "diverged_step": 7, "diverged_cause": "nonfinite_loss"},
    ]  # fmt: skip
    metrics = [
        {"trial_id": "t1", "step": 10, "tokens": 1024, "val_loss": 3.0, "term_z_loss": 12.5, "node_id": "node-a"},
        {"trial_id": "t1", "step": 20, "tokens": 2048, "val_loss": 3.1, "term_z_loss": 11.0, "node_id": "node-a"},
        {"trial_id": "t2", "step": 7, "tokens": 700, "val_loss": 5.545, "diverged": 1, "node_id": "node-b"},
    ]
    results.write_trials(sweep_dir, trials)
    results.write_metrics(sweep_dir, metrics)
    results.write_progress(sweep_dir, {"sweep_id": "writers", "status": "RUNNING", "counts": {"RUNNING": 1}})
    assert {"trials.parquet", "metrics.parquet", "progress.json"} <= _object_names(sweep_dir)
    frame = results.read_trials(sweep_dir).set_index("trial_id")
    assert frame.loc["t1", "z_loss_weight"] == pytest.approx(1e-4)
    assert frame.loc["t2", "status"] == "DIVERGED" and frame.loc["t2", "diverged_step"] == 7
    newer = results.read_metrics(sweep_dir, trial_id="t1", since_step=10)
    assert newer["step"].tolist() == [20] and newer["term_z_loss"].tolist() == [11.0]
    by_node = results.read_metrics(sweep_dir).groupby("trial_id")["node_id"].first().to_dict()
    assert by_node == {"t1": "node-a", "t2": "node-b"}
    assert results.read_progress(sweep_dir)["status"] == "RUNNING"  # type: ignore[index]


def test_results_read_the_same_from_s3_as_from_disk(local_sweep: Path, s3_sweep: str) -> None:
    from search_spaces.run import results

    local_trials = results.read_trials(str(local_sweep)).sort_values("trial_id").reset_index(drop=True)
    s3_trials = results.read_trials(s3_sweep).sort_values("trial_id").reset_index(drop=True)
    assert len(s3_trials) == len(paper_grid_trials(seeds=(0,)))
    assert s3_trials.equals(local_trials)
    one = str(local_trials["trial_id"].iloc[0])
    local_metrics = results.read_metrics(str(local_sweep), trial_id=one, since_step=40)
    s3_metrics = results.read_metrics(s3_sweep, trial_id=one, since_step=40)
    assert len(s3_metrics) > 0 and s3_metrics.reset_index(drop=True).equals(local_metrics.reset_index(drop=True))
    assert results.read_progress(s3_sweep) == results.read_progress(str(local_sweep))
    assert results.read_spec(s3_sweep) == results.read_spec(str(local_sweep))


def test_report_renders_from_and_into_the_bucket(local_sweep: Path, s3_sweep: str) -> None:
    from search_spaces.reports.render import render

    rendered = render(s3_sweep, formats=("json", "md"))
    assert rendered["json"] == f"{s3_sweep}/report.json"
    assert {"report.json", "report.md"} <= _object_names(s3_sweep)
    local = render(str(local_sweep), formats=("json", "md"))
    fs, root = pafs.FileSystem.from_uri(s3_sweep)
    with fs.open_input_stream(f"{root}/report.json") as stream:
        s3_report = json.loads(stream.read())
    local_report = json.loads((local_sweep / "report.json").read_text())
    assert local["json"].endswith("report.json")
    # Same sweep, same report; only where it lives differs.
    assert s3_report["best"] == local_report["best"]
    assert len(s3_report["trials"]) == len(local_report["trials"])
