"""``lossweep train-local``: learns, prints one JSON line, rejects bad flags in one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lossweep.cli.main import app
from trainables.data.tokens import load_dataset
from trainables.train.config import DataConfig


def _unigram_entropy(tokens: np.ndarray) -> float:
    counts = np.bincount(np.asarray(tokens, dtype=np.int64)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_train_local_learns_below_the_unigram_entropy(tmp_path: Path) -> None:
    env = {**os.environ, "LOSSWEEP_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "lossweep.cli.main", "train-local", "--preset", "tiny", "--steps", "200",
           "--seq-len", "64", "--json", "--out", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("val_loss", "train_loss", "tokens", "steps", "diverged", "diverged_step", "diverged_cause",
                "tokens_per_s"):  # fmt: skip
        assert key in final, key
    assert final["steps"] == 200 and final["tokens"] == 200 * 16 * 64 and final["diverged"] == 0

    val = load_dataset(DataConfig(cache_dir=str(tmp_path / "cache"))).val
    entropy = _unigram_entropy(val[:])
    assert final["val_loss"] < entropy - 0.5, (final["val_loss"], entropy)
    assert entropy < math.log(257)

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["steps"] == 200 and manifest["corpus_hash"]
    assert set(manifest["splits"]) == {"train", "val", "test"} and all(manifest["splits"].values())
    assert manifest["evaluation"]["test"]["tokens"] >= manifest["config"]["data"]["test_tokens"]
    assert "test_ce" in final and final["test_ce_se"] <= 0.01  # the default test split resolves 0.01 nats
    reports = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in reports] == [50, 100, 150, 200]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-1"], "--lr: must be > 0"),
        (["--preset", "huge"], "--preset: unknown model preset 'huge'"),
        (["--tokenizer", "words"], "--tokenizer: unknown tokenizer 'words'"),
        (["--data", "text:/no/such/place"], "corpus path /no/such/place does not exist"),
        (["--data", "s3:bucket"], "--data: use 'stdlib', 'text:PATH', 'parquet:PATH' or 'shards:DIR'"),
        (["--data", "shards:/no/such/place"], "/no/such/place is not a folder; prepare one with"),
        (["--loss", "bogus=1"], "--loss:"),
        (["--precision", "fp16"], "--precision: must be one of fp32, bf16"),
        (["--head-precision", "fp16"], "--head-precision: must be one of fp32, bf16"),
        (["--init", "kaiming"], "--init: must be one of oec, legacy"),
        (["--l0", "median"], "--l0: must be one of ln_v, initial"),
        (["--l0", "0"], "--l0: must be > 0 when it is a number"),
        (["--l0", "-10.83"], "--l0: must be > 0 when it is a number"),
        (["--eval-tokens", "0"], "--eval-tokens: must be >= 1"),
        (["--test-tokens", "0"], "--test-tokens: must be >= 1"),
        (["--sampling", "shuffle"], "--sampling: must be one of epoch, random"),
        (["--eval-interval", "5", "--test-interval", "7"], "--test-interval: must be 0 or a multiple of"),
        (["--sustained-evals", "-1"], "--sustained-evals: must be >= 0"),
        (["--mlp-hidden", "0"], "--mlp-hidden: must be >= 1"),
        (["--batch-size", "100000", "--steps", "1"], "fewer than one batch"),
        (["--batch-size", "8", "--micro-batch", "3"], "--micro-batch: 3 must divide the sequences each rank holds"),
        (["--micro-batch", "0"], "--micro-batch: must be >= 1"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LOSSWEEP_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["train-local", "--json", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
