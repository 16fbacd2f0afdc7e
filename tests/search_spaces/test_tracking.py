"""The tracking section and the tracker guard without Ray: credentials are refused without being
echoed, ``--set`` reaches the section, a tracker whose client is missing is a one-line error naming
the extra, and an unreachable MLflow server (a real client, a closed port) marks the tracker failed
once while nothing raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from search_spaces.run import tracking
from search_spaces.run.callbacks import build_progress
from search_spaces.run.sweep_dir import read_tracking, record_tracking
from search_spaces.run.tracking.guard import Guarded, redact
from search_spaces.spec.presets import apply_overrides, parse_set_args
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.tracking_spec import MlflowTracking
from tests.fixtures.trackers import free_port

SECRET = "s3cr3t-VALUE-42"
REFUSED = [
    ({"wandb": {"project": "p", "api_key": SECRET}}, "tracking.wandb", "api_key"),
    ({"mlflow": {"tracking_uri": "http://h:5000", "password": SECRET}}, "tracking.mlflow", "password"),
    ({"mlflow": {"tracking_uri": f"http://user:{SECRET}@h:5000"}}, "tracking.mlflow.tracking_uri", "user or password"),
    ({"mlflow": {"tracking_uri": f"https://h/?access_token={SECRET}"}}, "tracking.mlflow.tracking_uri", "credential"),
    ({"wandb": {"base_url": f"https://me:{SECRET}@wandb.local"}}, "tracking.wandb.base_url", "user or password"),
    ({"auth_token": SECRET}, "tracking", "auth_token"),
    ({"mlflow": {"tracking_uri": "http://h:5000", "MLFLOW_TRACKING_TOKEN": SECRET}}, "tracking.mlflow", "TOKEN"),
]


@pytest.mark.parametrize(("section", "field", "named"), REFUSED)
def test_a_credential_in_the_tracking_section_is_refused_unechoed(section: dict, field: str, named: str) -> None:
    with pytest.raises(ValidationError) as info:
        SweepSpec.model_validate({"tracking": section})
    (error,) = info.value.errors(include_input=False)
    assert ".".join(map(str, error["loc"])) == field and named in error["msg"]
    assert SECRET not in str(info.value)


def test_tracking_defaults_to_tensorboard_and_set_reaches_each_tracker() -> None:
    assert SweepSpec().tracking.enabled() == ["tensorboard"]
    spec = apply_overrides(SweepSpec(), parse_set_args([
        "tracking.mlflow.tracking_uri=http://127.0.0.1:5000", "tracking.wandb.mode=offline",
        "tracking.tensorboard=false",
    ]))  # fmt: skip
    assert spec.tracking.enabled() == ["mlflow", "wandb"]
    assert spec.tracking.mlflow.tracking_uri == "http://127.0.0.1:5000" and spec.tracking.wandb.mode == "offline"
    with pytest.raises(KeyError, match="no 'tracking_url'"):
        apply_overrides(spec, {"tracking.mlflow.tracking_url": "http://x"})


def test_a_tracker_without_its_client_is_a_one_line_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from search_spaces.run.job import main

    monkeypatch.setitem(tracking.CLIENT_MODULES, "wandb", "lossweep_no_such_wandb_client")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"tracking": {"wandb": {"mode": "offline"}}}))
    assert main([str(spec_file), str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tracking.wandb" in err and "lossweep[wandb]" in err
    assert not (tmp_path / "sweep").exists()


def test_redact_masks_credentials() -> None:
    text = f"cannot reach https://bob:{SECRET}@mlflow:5000/api?x=1&api_key={SECRET} token={SECRET}"
    masked = redact(text)
    assert SECRET not in masked and "https://***@mlflow:5000/api" in masked and "api_key=***" in masked


def test_an_unreachable_mlflow_server_marks_the_tracker_failed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mlflow")
    from search_spaces.run.tracking.mlflow_bridge import MlflowBridge
    from search_spaces.run.tracking.trial_record import TrialRecords

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a closed port answers at once: no waiting
    sweep_dir = str(tmp_path / "sweep")
    Path(sweep_dir).mkdir()
    spec = SweepSpec()
    uri = f"http://127.0.0.1:{free_port()}"
    guard = Guarded("mlflow", sweep_dir, MlflowBridge(MlflowTracking(tracking_uri=uri), TrialRecords(
        spec.model_dump(mode="json"), "sweep"), sweep_dir))  # fmt: skip
    guard.setup(stop=None, num_samples=1, total_num_samples=1)
    guard.on_trial_start(iteration=0, trials=[], trial=object())  # forwarded nowhere: the tracker is off
    guard.on_experiment_end(trials=[])
    state = read_tracking(sweep_dir)["mlflow"]
    assert state["status"] == "failed" and state["error"]
    assert capsys.readouterr().err.count("tracking.mlflow failed") == 1
    progress = build_progress("sweep", spec, [], status="RUNNING", elapsed_s=0.0, tracking=read_tracking(sweep_dir))
    assert progress["tracking"] == {"mlflow": {"status": "failed", "error": state["error"]}}


def test_record_tracking_merges_and_refuses_unknown_statuses(tmp_path: Path) -> None:
    record_tracking(str(tmp_path), "mlflow", parent_run_id="abc")
    record_tracking(str(tmp_path), "mlflow", status="failed", error="boom")
    assert json.loads((tmp_path / "tracking.json").read_text())["mlflow"] == {
        "status": "failed", "error": "boom", "parent_run_id": "abc"}  # fmt: skip
    with pytest.raises(ValueError, match="not a tracker status"):
        record_tracking(str(tmp_path), "wandb", status="broken")


def test_sweep_run_refuses_a_tracker_without_its_client_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lossweep.cli.main import app

    monkeypatch.setitem(tracking.CLIENT_MODULES, "mlflow", "lossweep_no_such_mlflow_client")
    out = CliRunner().invoke(app, ["sweep", "run", "demo", "--out", str(tmp_path / "sweep"),
                                   "--set", "tracking.mlflow.tracking_uri=http://127.0.0.1:5000"],
                             env={"COLUMNS": "200"})  # fmt: skip
    assert out.exit_code == 2, out.output
    message = " ".join(out.output.replace("│", " ").split())
    assert "tracking.mlflow" in message and "pip install 'lossweep[mlflow]'" in message
    assert not (tmp_path / "sweep").exists()


def test_wandb_online_without_a_key_marks_the_tracker_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("wandb")
    from search_spaces.run.tracking.trial_record import TrialRecords
    from search_spaces.run.tracking.wandb_bridge import WandbBridge
    from search_spaces.spec.tracking_spec import WandbTracking

    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    sweep_dir = str(tmp_path / "sweep")
    Path(sweep_dir).mkdir()
    records = TrialRecords(SweepSpec().model_dump(mode="json"), "sweep")
    guard = Guarded("wandb", sweep_dir, WandbBridge(WandbTracking(project="p"), records, sweep_dir))
    guard.setup(stop=None, num_samples=1, total_num_samples=1)
    state = read_tracking(sweep_dir)["wandb"]
    assert state["status"] == "failed" and state["error"]
    assert capsys.readouterr().err.count("tracking.wandb failed") == 1
