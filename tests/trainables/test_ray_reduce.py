"""Cross-rank reduction of report rows over a real gloo group, and the driver-side resource checks.

No Ray here: ``reduce_row`` and ``check_resources`` are plain functions; the Ray runs that use them
are in ``test_ray_trainer.py``.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainables.config import DataConfig, TrainConfig
from trainables.loop import _RowReducer, reduce_row
from trainables.reduce import IdentityReducer, TorchDistReducer
from trainables.trainer import InsufficientResourcesError, Resources, check_resources, validate


def _rank_row(rank: int) -> dict[str, object]:
    # What two ranks of one run may hold before reduction: their own shard's losses and timings.
    return {
        "step": 10,
        "tokens": 640,
        "train_loss": 2.0 + rank,  # mean -> 2.5
        "logits_absmax": 5.0 + 10 * rank,  # max -> 15
        "elapsed_s": 1.0 + rank,  # slowest rank -> 2
        "tokens_per_s": 100.0 * (rank + 1),  # mean -> 150
        "grad_norm": math.nan if rank == 1 else 1.0,  # NaN anywhere -> dropped, never reported
        "diverged": 0,
        "diverged_cause": "",
        "missing": None,
    }


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        reducer = _RowReducer(TorchDistReducer())
        # Keys in a different order on each rank: reduction must still line them up.
        row = _rank_row(rank)
        if rank == 1:
            row = dict(reversed(list(row.items())))
        torch.save(reduce_row(row, reducer), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rows_are_reduced_across_ranks(tmp_path: Path) -> None:
    out = str(tmp_path / "row")
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, start_method="spawn")
    rows = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    assert rows[0] == rows[1]  # every rank reports the same row, so rank 0's is the run's
    row = rows[0]
    assert row["train_loss"] == pytest.approx(2.5)
    assert row["logits_absmax"] == 15.0
    assert row["elapsed_s"] == 2.0
    assert row["tokens_per_s"] == pytest.approx(150.0)
    assert row["step"] == 10 and isinstance(row["step"], int)
    assert row["diverged"] == 0 and isinstance(row["diverged"], int)
    assert row["diverged_cause"] == ""
    assert "grad_norm" not in row and "missing" not in row


def test_single_rank_row_keeps_finite_values() -> None:
    row = reduce_row({"val_loss": 3.0, "x": math.inf, "step": 5, "flag": True}, _RowReducer(IdentityReducer()))
    assert row == {"val_loss": 3.0, "step": 5, "flag": 1}


def test_resources_validation() -> None:
    with pytest.raises(ValueError, match="workers"):
        Resources(workers=0)
    with pytest.raises(ValueError, match="cpus_per_worker"):
        Resources(cpus_per_worker=-1)
    config = TrainConfig(data=DataConfig(batch_size=6))
    with pytest.raises(ValueError, match="divisible by workers=4"):
        validate(config, Resources(workers=4))
    with pytest.raises(ValueError, match="use_gpu"):
        validate(config, Resources(workers=2, gpus_per_worker=1))
    with pytest.raises(ValueError, match="multiple of eval_interval"):
        validate(TrainConfig(eval_interval=10, checkpoint_interval=15), Resources())


def test_check_resources_names_what_was_asked_and_what_exists() -> None:
    two_cpus = [{"CPU": 2.0, "memory": 1e9}]
    check_resources(Resources(workers=2), nodes=two_cpus)
    check_resources(Resources(workers=4, cpus_per_worker=0.5), nodes=two_cpus)
    with pytest.raises(InsufficientResourcesError) as too_many:
        check_resources(Resources(workers=3), nodes=two_cpus)
    message = str(too_many.value)
    assert "3 worker(s) of {CPU: 1}" in message and "{CPU: 2}" in message and "at most 2" in message
    with pytest.raises(InsufficientResourcesError, match="no node of the cluster is that large"):
        check_resources(Resources(workers=1, gpus_per_worker=1), nodes=two_cpus)
    # Two 1-CPU nodes hold two 1-CPU workers but not one 2-CPU worker.
    check_resources(Resources(workers=2), nodes=[{"CPU": 1.0}, {"CPU": 1.0}])
    with pytest.raises(InsufficientResourcesError):
        check_resources(Resources(workers=1, cpus_per_worker=2), nodes=[{"CPU": 1.0}, {"CPU": 1.0}])
