"""Two (or more) real processes in one gloo group, for the tests of cross-rank code: each rank runs a
module-level function and its return value comes back to the test, rank by rank."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world_size: int, port: int, out: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # the ranks share the test machine's cores
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.save(fn(rank, world_size, *args), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], *args: Any, world_size: int = 2) -> list[Any]:
    """``[fn(rank, world_size, *args) for each rank]``, each rank in its own spawned process inside one
    gloo group. ``fn`` and ``args`` must be picklable (``fn`` a module-level function)."""
    with tempfile.TemporaryDirectory(prefix="lossweep-gloo-") as tmp:
        out = str(Path(tmp) / "rank")
        spawn_args = (world_size, _free_port(), out, fn, args)
        mp.start_processes(_rank, args=spawn_args, nprocs=world_size, start_method="spawn")
        return [torch.load(f"{out}.{r}", weights_only=False) for r in range(world_size)]
