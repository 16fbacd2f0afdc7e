"""One tiny TPE sweep (2 trials) seen by every tracker at once, each read back with its own client: a
real ``mlflow server`` (SQLite backend) through ``MlflowClient``, W&B offline runs through their
``.wandb`` files (wandb's own protobuf records), TensorBoard through ``EventAccumulator``, and the
sweep's Optuna study through a real optuna-dashboard server's API. Then the driver runs again on the
finished sweep dir and no tracker gets a second run."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from search_spaces.run import results
from search_spaces.run.sweep_dir import read_tracking
from search_spaces.run.tracking.sweep_artifacts import BEST_CONFIG_FILE
from search_spaces.run.tracking.tensorboard_bridge import TENSORBOARD_DIR, TOKENS_PREFIX
from search_spaces.run.tracking.trial_record import CONFIG_HASH_TAG, ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG, TRIAL_ID_TAG
from search_spaces.run.tracking.wandb_bridge import WANDB_DIR
from search_spaces.spec.tracking_spec import TrackingSpec
from tests.fixtures.sweeps import driver_env, run_driver
from tests.fixtures.trackers import free_port, stop, wait_http

# The module's set-up starts an mlflow server and a Ray cluster and runs a sweep: minutes on a loaded machine.
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1800)]

EXPERIMENT = "tiny-tracked"
WANDB_PROJECT = "lossweep-test"


def tracked_spec(mlflow_uri: str) -> dict[str, Any]:
    return {
        "name": "tiny-tracked",
        "model": {"preset": "tiny"},
        "data": {"corpus": "stdlib", "seq_len": 32, "batch_size": 4, "eval_tokens": 32, "test_tokens": 64},
        "budget": {"steps": 8, "warmup_steps": 1, "eval_interval": 4},
        "methods": ["baseline", "z_loss"],
        "lr": {"distribution": "loguniform", "low": 1e-3, "high": 1e-2},
        "search": {"algorithm": "tpe", "num_samples": 2, "startup_trials": 2, "seed": 3},
        "resources": {"workers": 1, "cpus_per_worker": 0.5},
        "max_concurrent_trials": 2,
        "tracking": {
            "mlflow": {"tracking_uri": mlflow_uri, "experiment_name": EXPERIMENT},
            "wandb": {"project": WANDB_PROJECT, "mode": "offline"},
            "tensorboard": True,
        },
    }


@pytest.fixture(scope="module")
def tracked_sweep(
    mlflow_server_starting: Any, ray_cluster: Any, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    pytest.importorskip("wandb")
    pytest.importorskip("tensorboard")
    sweep_dir = tmp_path_factory.mktemp("tracked") / "tiny-tracked"
    proc = run_driver(tracked_spec(mlflow_server), sweep_dir, env=driver_env(ray_cluster), timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return sweep_dir


def _runs(uri: str) -> tuple[Any, list[Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id], max_results=100)


def test_mlflow_holds_a_parent_run_and_one_run_per_trial(tracked_sweep: Path, mlflow_server: str) -> None:
    trials = results.read_trials(tracked_sweep).set_index("trial_id")
    metrics = results.read_metrics(tracked_sweep)
    client, runs = _runs(mlflow_server)
    parents = [r for r in runs if r.data.tags.get(ROLE_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(ROLE_TAG) == "trial"]
    assert len(parents) == 1 and len(children) == len(trials) == 2
    parent = parents[0]
    assert parent.data.tags[SWEEP_ID_TAG] == tracked_sweep.name and parent.info.status == "FINISHED"
    for run in children:
        tid = run.data.tags[TRIAL_ID_TAG]
        row = trials.loc[tid]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[SWEEP_ID_TAG] == tracked_sweep.name
        assert run.data.tags[CONFIG_HASH_TAG] == row["config_hash"]
        assert run.data.tags[STATUS_TAG] == row["status"] and run.info.status == "FINISHED"
        params = run.data.params
        assert params["method"] == row["method"] and float(params["lr"]) == pytest.approx(row["lr"])
        assert int(params["seed"]) == row["seed"] and float(params["config.optim.lr"]) == pytest.approx(row["lr"])
        mine = metrics[metrics["trial_id"] == tid].sort_values("step")
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == mine["step"].tolist()
        assert [m.value for m in history] == pytest.approx(mine["val_loss"].tolist())
        tokens = client.get_metric_history(run.info.run_id, "tokens")
        assert [m.value for m in tokens] == mine["tokens"].astype(float).tolist()
        assert {"train_loss", "mu_norm", "logits_std", "tokens_per_s"} <= set(run.data.metrics)
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "report.json", BEST_CONFIG_FILE} <= files
    best = json.loads(Path(client.download_artifacts(parent.info.run_id, BEST_CONFIG_FILE)).read_text())
    progress = results.read_progress(tracked_sweep)
    assert best["trial_id"] == progress["best"]["trial_id"]
    assert progress["tracking"] == {name: {"status": "ok", "error": None} for name in TrackingSpec.model_fields}


def _wandb_records(path: Path) -> list[Any]:
    """The records of a ``.wandb`` file: W&B's LevelDB-log framing (32 KiB blocks of chunks with a
    7-byte header: CRC, length, type) around its ``Record`` protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    block, header = 32768, 7
    out, pending, pos = [], b"", 7  # the file starts with a 7-byte W&B header
    while pos + header <= len(data):
        if (pos % block) + header > block:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        chunk = data[pos + header : pos + header + length]
        pos += header + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL/LAST end it
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_runs_hold_each_evaluation(tracked_sweep: Path) -> None:
    metrics = results.read_metrics(tracked_sweep)
    runs = sorted((tracked_sweep / WANDB_DIR / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    seen = set()
    for run_dir in runs:
        records = _wandb_records(next(run_dir.glob("*.wandb")))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert run.project == WANDB_PROJECT and run.run_group == tracked_sweep.name
        tid = run.run_id.removeprefix(f"{tracked_sweep.name}-")
        seen.add(tid)
        config = {_key(item): json.loads(item.value_json) for item in run.config.update}  # wandb.init's config
        for r in records:
            if r.WhichOneof("record_type") == "config":  # later updates: the final status
                config.update({_key(item): json.loads(item.value_json) for item in r.config.update})
        rows = []
        for r in records:
            if r.WhichOneof("record_type") == "history":
                row = {_key(item): json.loads(item.value_json) for item in r.history.item}
                if "val_loss" in row:
                    rows.append(row)
        mine = metrics[metrics["trial_id"] == tid].sort_values("step")
        assert [row["_step"] for row in rows] == mine["step"].tolist()
        assert [row["val_loss"] for row in rows] == pytest.approx(mine["val_loss"].tolist())
        row = results.read_trials(tracked_sweep).set_index("trial_id").loc[tid]
        assert config["method"] == row["method"] and config["lr"] == pytest.approx(row["lr"])
        assert config[CONFIG_HASH_TAG] == row["config_hash"] and config[STATUS_TAG] == row["status"]
    assert seen == set(results.read_trials(tracked_sweep)["trial_id"])


def test_tensorboard_event_files_hold_each_evaluation(tracked_sweep: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = results.read_metrics(tracked_sweep)
    for tid in results.read_trials(tracked_sweep)["trial_id"]:
        events = EventAccumulator(str(tracked_sweep / TENSORBOARD_DIR / tid))
        events.Reload()
        mine = metrics[metrics["trial_id"] == tid].sort_values("step")
        by_step = events.Scalars("val_loss")
        assert [e.step for e in by_step] == mine["step"].tolist()
        assert [e.value for e in by_step] == pytest.approx(mine["val_loss"].tolist(), rel=1e-6)
        assert [e.step for e in events.Scalars(TOKENS_PREFIX + "val_loss")] == mine["tokens"].tolist()


def test_optuna_dashboard_serves_the_sweeps_study(tracked_sweep: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna_dashboard")
    port = free_port()
    log = (tmp_path / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), f"sqlite:///{tracked_sweep / 'optuna.db'}",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/studies", proc)
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as response:
            studies = json.load(response)["study_summaries"]
        study = next(s for s in studies if s["study_name"] == f"lossweep-{tracked_sweep.name}")
        with urllib.request.urlopen(f"{base}/api/studies/{study['study_id']}", timeout=10) as response:
            detail = json.load(response)
    finally:
        stop(proc)
        log.close()
    trials = results.read_trials(tracked_sweep).set_index("trial_id")
    assert len(detail["trials"]) == len(trials) == 2
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        row = trials.loc[attrs["tune_trial_id"]]
        assert attrs["method"] == row["method"] and float(attrs["lr"]) == pytest.approx(row["lr"])
        assert attrs["sweep_id"] == tracked_sweep.name and trial["state"] == "Complete"
        assert trial["values"] == pytest.approx([row["final_val_loss"]])


def test_a_restarted_driver_resumes_the_same_runs(tracked_sweep: Path, ray_cluster: Any, mlflow_server: str) -> None:
    before = read_tracking(tracked_sweep)
    proc = run_driver(tracked_spec(mlflow_server), tracked_sweep, env=driver_env(ray_cluster), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, runs = _runs(mlflow_server)
    assert len(runs) == 3
    assert read_tracking(tracked_sweep)["mlflow"]["parent_run_id"] == before["mlflow"]["parent_run_id"]
    assert len(list((tracked_sweep / WANDB_DIR / "wandb").glob("offline-run-*"))) == 2
