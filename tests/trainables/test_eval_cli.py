"""``lossweep eval`` on a checkpoint folder written as the training loop writes it: scores as JSON, and
bad input as one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("lm_eval")

from lossweep.cli.main import app
from trainables.downstream.local_tasks import NEXT_LINE
from trainables.train.checkpoint import write_checkpoint
from trainables.train.config import DataConfig, TrainConfig
from trainables.train.engine import TrainingRun


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, train_data_cache: str) -> Path:
    config = TrainConfig(model="tiny", steps=1, data=DataConfig(seq_len=32, batch_size=4, cache_dir=train_data_cache))
    folder = tmp_path_factory.mktemp("ckpt") / "checkpoint_000001"
    folder.mkdir()
    write_checkpoint(TrainingRun(config), folder)
    return folder


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exit_code, result.stdout, result.stderr


def test_eval_prints_scores_of_a_checkpoint(checkpoint: Path) -> None:
    code, out, err = _run(str(checkpoint), "--tasks", NEXT_LINE, "--limit", "4", "--json")
    assert code == 0, err
    score = json.loads(out)["scores"][NEXT_LINE]
    assert score["n"] == 4 and 0 <= score["acc"] <= 1 and score["metric"] == "acc"
    # a Ray Train run folder means its last checkpoint
    code, out, _ = _run(str(checkpoint.parent), "--limit", "4", "--json")
    assert code == 0 and json.loads(out)["checkpoint"] == str(checkpoint)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "cpu-small"], "does not fit model 'cpu-small' ("),
        (["--preset", "huge"], "unknown model preset 'huge'"),
        (["--corpus", "text:/no/such/dir"], f"task '{NEXT_LINE}': corpus path /no/such/dir does not exist"),
    ],
)
def test_bad_input_is_one_line(checkpoint: Path, args: list[str], message: str) -> None:
    code, _, err = _run(str(checkpoint), "--limit", "4", *args)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and message in line


def test_not_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    code, _, err = _run(str(tmp_path))
    assert code == 2 and err.strip().startswith(f"error: {tmp_path} is not a checkpoint, a Ray Train run folder")
    code, _, err = _run(str(tmp_path / "missing"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'missing'} does not exist"
