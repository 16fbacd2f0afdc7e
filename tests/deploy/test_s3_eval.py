"""Downstream evaluation of a sweep dir on object storage: the trial's run folder is found on S3 (Ray
records it without its scheme), its last checkpoint is copied to the evaluating node and scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("lm_eval")

from lossweep.cli.main import app
from search_spaces.run import storage
from search_spaces.run.evaluation import checkpoint_of
from search_spaces.run.sweep_dir import trial_manifest_path
from tests.deploy.conftest import S3Server
from trainables.downstream.local_tasks import NEXT_LINE
from trainables.train.checkpoint import CHECKPOINT_FILE, CHECKPOINT_META, write_checkpoint
from trainables.train.config import DataConfig, TrainConfig
from trainables.train.engine import TrainingRun


@pytest.fixture
def s3_trial(s3_env: S3Server, tmp_path: Path, train_data_cache: str) -> tuple[str, str]:
    """A sweep dir on S3 with one trial whose run folder holds two checkpoints (steps 1 and 2)."""
    config = TrainConfig(model="tiny", steps=1, data=DataConfig(seq_len=32, batch_size=4, cache_dir=train_data_cache))
    local = tmp_path / "ckpt"
    local.mkdir()
    write_checkpoint(TrainingRun(config), local)
    sweep_dir = s3_env.uri(f"sweeps/{tmp_path.name}")
    run = f"{sweep_dir}/runs/lossweep-t1"
    for step in (1, 2):
        meta = json.loads((local / CHECKPOINT_META).read_text()) | {"step": step}
        folder = f"{run}/checkpoint_00000{step}"
        storage.write_bytes(f"{folder}/{CHECKPOINT_FILE}", (local / CHECKPOINT_FILE).read_bytes())
        storage.write_text(f"{folder}/{CHECKPOINT_META}", json.dumps(meta))
    # what the trainer records: Ray's result path, without the scheme
    manifest = {"config": config.to_dict(), "run_path": run.removeprefix("s3://")}
    storage.write_text(trial_manifest_path(sweep_dir, "t1"), json.dumps(manifest))
    return sweep_dir, f"{run}/checkpoint_000002"


def test_the_last_checkpoint_of_a_trial_on_s3_is_found_and_scored(s3_trial: tuple[str, str]) -> None:
    sweep_dir, last = s3_trial
    assert checkpoint_of(sweep_dir, "t1") == last
    result = CliRunner().invoke(app, ["eval", f"{sweep_dir}/trials/t1", "--limit", "4", "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["checkpoint"] == last and out["scores"][NEXT_LINE]["n"] == 4
    # the run folder and the checkpoint folder themselves are accepted too
    for target in (last.rsplit("/", 1)[0], last):
        again = CliRunner().invoke(app, ["eval", target, "--limit", "4", "--json"])
        assert again.exit_code == 0 and json.loads(again.stdout)["checkpoint"] == last, again.stderr


def test_a_path_on_s3_that_holds_no_checkpoint_is_one_line(s3_env: S3Server) -> None:
    result = CliRunner().invoke(app, ["eval", s3_env.uri("sweeps/none/trials/t9"), "--limit", "4"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "is not a checkpoint" in line
