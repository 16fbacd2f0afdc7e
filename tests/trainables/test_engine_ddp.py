"""Two DDP processes (gloo) with global batch B follow the one-process run with batch B."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainables.config import DataConfig, OptimConfig, TrainConfig
from trainables.engine import TrainingRun
from trainables.losses.config import LossConfig


def _config(cache: str) -> TrainConfig:
    return TrainConfig(
        model="tiny",
        data=DataConfig(seq_len=32, batch_size=8, eval_batches=2, cache_dir=cache),
        optim=OptimConfig(lr=3e-3, warmup_steps=1),
        loss=LossConfig.from_method("z_loss+mu_centering", {}),
        steps=4,
        eval_interval=2,
    )


def _worker(rank: int, world_size: int, port: int, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from torch.nn.parallel import DistributedDataParallel

        from trainables.reduce import TorchDistReducer

        run = TrainingRun(
            _config(cache),
            rank=rank,
            world_size=world_size,
            reducer=TorchDistReducer(),
            wrap_model=DistributedDataParallel,
        )
        rows: list[dict] = []
        run.run(rows.append)
        torch.save({"rows": rows, "model": run.module.state_dict()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_workers_match_one_worker(tmp_path: Path) -> None:
    cache, out = str(tmp_path / "cache"), str(tmp_path / "result")
    single = TrainingRun(_config(cache))
    single_rows: list[dict] = []
    single.run(single_rows.append)

    mp.start_processes(_worker, args=(2, _free_port(), cache, out), nprocs=2, start_method="spawn")
    results = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    assert results[0]["rows"] == results[1]["rows"]  # reduced metrics: every rank reports the same
    for name, tensor in single.module.state_dict().items():
        torch.testing.assert_close(results[0]["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(single_rows, results[0]["rows"], strict=True):
        assert a["step"] == b["step"] and a["tokens"] == b["tokens"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
