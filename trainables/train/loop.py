"""The per-worker function of one Ray Train run (``TorchTrainer(train_loop_per_worker=train_loop)``).

Each worker builds the engine's ``TrainingRun`` for its rank, wraps the model in DDP (gloo on CPU,
NCCL on GPU), resumes from ``ray.train.get_checkpoint()`` when Ray restarts the worker group, and
reports through ``ray.train.report``. What reaches Tune is rank 0's dict alone: the engine's rows
are already reduced across ranks by its one rule (``trainables.train.reduce.combine_ranks``), identical on
every rank, so they are reported as they are, non-finite values dropped. A diverged run reports
one last row with ``diverged=1`` and the finite sentinel, then returns normally, so the run ends
TERMINATED and no NaN ever reaches Tune or Optuna.

Checkpoints ride on reports: a report at or after each ``checkpoint_interval`` steps (and the final
report) carries one, written by rank 0 only. With ``checkpoint_interval`` a multiple of
``eval_interval`` (what ``trainer.fit`` checks) that is exactly every K steps.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.train.checkpoint import read_meta, read_state, write_checkpoint
from trainables.train.config import TrainConfig
from trainables.train.progress_log import log_progress
from trainables.train.ray_metrics import TrialMetrics
from trainables.train.reduce import Reducer


def finite_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` without None or non-finite numbers (a NaN must never reach Tune or Optuna), bools as
    ints; strings (``diverged_cause``) pass through."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if value is not None:
            out[key] = value
    return out


def train_loop(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Runs one rank. ``loop_config``: ``train_config`` (``TrainConfig.to_dict()``), optional
    ``threads`` (torch intra-op threads per worker) and ``progress_file`` (a local JSON-lines file that
    rank 0 appends a ``started`` event (pid, step resumed from) and every report to; ``lossweep train``
    tails it). Returns the last reported row."""
    import ray.train

    from trainables.data.tokens import load_dataset
    from trainables.train import startup

    marks = {"loop_entered": time.time()}
    process_started = startup.process_started()
    if process_started is not None:
        marks["worker_process_started"] = process_started
    config = TrainConfig.from_dict(loop_config["train_config"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    threads = loop_config.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    device = _device(config)
    dataset = load_dataset(config.data)
    marks["data_ready"] = time.time()
    run = _build_run(config, rank=rank, world_size=world_size, device=device, dataset=dataset)
    progress = _Progress(loop_config.get("progress_file") if rank == 0 else None)

    resumed_from = _maybe_resume(run, ray.train.get_checkpoint())
    marks["model_ready"] = time.time()
    progress.event(
        "started",
        pid=os.getpid(),
        world_size=world_size,
        step=run.step,
        resumed=resumed_from is not None,
        cpu_s=time.process_time(),  # this worker's CPU seconds so far: its share of the start-up cost
    )
    extra = {"vocab_size": run.vocab_size, "num_params": run.module.num_params()}
    corpus_hash = getattr(run.data, "corpus_hash", None)
    # Rank 0's Ray node: sweep results show where each trial trained (a multi-node cluster's spread).
    node_id = ray.get_runtime_context().get_node_id()
    last_checkpoint = resumed_from if resumed_from is not None else 0
    # Rank 0 exports each report to Ray's metrics pipeline and logs one line for the dashboard's log
    # viewer (one series per trial, not one per rank); tags come from the run name (<sweep>-<trial>).
    run_name = context.get_experiment_name()
    live = TrialMetrics.for_run(run_name, method=config.loss.method) if rank == 0 else None
    final: dict[str, Any] = {}

    def on_report(row: dict[str, Any]) -> None:
        nonlocal last_checkpoint, final
        reduced = finite_row({**row, **extra})
        final = reduced
        if corpus_hash is not None:
            reduced["corpus_hash"] = corpus_hash
        reduced["node_id"] = node_id
        due = not reduced.get("diverged") and (
            run.step >= config.steps
            or (config.checkpoint_interval > 0 and run.step - last_checkpoint >= config.checkpoint_interval)
        )
        with _checkpoint(run, enabled=due, rank=rank) as checkpoint:
            ray.train.report(reduced, checkpoint=checkpoint)
        if due:
            last_checkpoint = run.step
        progress.row(reduced, checkpoint=due)
        if live is not None:
            live.record(reduced)
            log_progress(reduced, run=run_name, total_steps=config.steps)
        marks["last_report"] = time.time()

    def on_step(_: dict[str, Any]) -> None:
        marks.setdefault("first_step", time.time())

    # bf16 autocast (config.precision, config.head_precision) is applied by the model itself, so CPU
    # and GPU runs of one config compute the same thing.
    try:
        run.run(on_report, on_step)
    finally:
        progress.close()
    # Rank 0's return value becomes ``Result.return_value``: the final row even when no checkpoint
    # carried it (``Result.metrics`` only holds the metrics of the last checkpoint), with rank 0's
    # start-up marks (``trainables.train.startup``), which are not a report's.
    return {**final, **run.data_record(), startup.STARTUP_KEY: marks}


# ----------------------------------------------------------------------------------------- building


def _device(config: TrainConfig) -> torch.device:
    if config.use_gpu:
        if not torch.cuda.is_available():
            raise RuntimeError("config.use_gpu is set but this Ray worker sees no CUDA device")
        import ray.train.torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)  # TF32 is TrainConfig.allow_tf32, applied by the engine
        return device
    return torch.device("cpu")


def _build_run(config: TrainConfig, *, rank: int, world_size: int, device: torch.device, dataset: Any) -> Any:
    import torch.distributed as dist

    from trainables.train.engine import TrainingRun
    from trainables.train.reduce import IdentityReducer, NanSafeMaxReducer, TorchDistReducer

    distributed = dist.is_available() and dist.is_initialized() and world_size > 1
    reducer: Reducer = NanSafeMaxReducer(TorchDistReducer(device) if distributed else IdentityReducer())

    def wrap(model: nn.Module) -> nn.Module:
        if not distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        # gradient_as_bucket_view: grads alias the all-reduce buckets, saving a copy per step.
        return DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True)

    return TrainingRun(
        config,
        rank=rank,
        world_size=world_size,
        device=device,
        dataset=dataset,
        reducer=reducer,
        wrap_model=wrap,
        mfu_devices=_distinct_gpus(device) if distributed else None,
    )


def _distinct_gpus(device: torch.device) -> int | None:
    """How many distinct GPUs the ranks train on (ranks sharing one GPU through fractional
    ``gpus_per_worker`` share its peak in the MFU); None on CPU. Collective: every rank calls it."""
    if device.type != "cuda":
        return None
    import socket

    import torch.distributed as dist

    ident = (socket.gethostname(), str(torch.cuda.get_device_properties(device).uuid))
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, ident)
    return len(set(gathered))


# -------------------------------------------------------------------------------------- checkpoints


@contextlib.contextmanager
def _checkpoint(run: Any, *, enabled: bool, rank: int) -> Iterator[Any]:
    """A ``ray.train.Checkpoint`` of the run's full state on rank 0 when ``enabled``, else None.
    The temporary directory only has to outlive ``ray.train.report``, which copies it to storage."""
    if not enabled or rank != 0:
        yield None
        return
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory(prefix="lossweep-ckpt-") as tmp:
        write_checkpoint(run, Path(tmp))
        yield Checkpoint.from_directory(tmp)


def _maybe_resume(run: Any, checkpoint: Any) -> int | None:
    """Loads ``checkpoint`` into ``run``; returns the step resumed from, or None for a fresh start."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        meta = read_meta(Path(directory))
        expected = run.config.config_hash()
        if meta.get("config_hash") != expected:
            raise RuntimeError(
                f"checkpoint {checkpoint.path} belongs to config {meta.get('config_hash')}, not {expected}"
            )
        state = read_state(Path(directory), run.device)
    run.load_state_dict(state)
    return int(run.step)


# ----------------------------------------------------------------------------------------- progress


class _Progress:
    """Rank 0's JSON-lines log of start/resume events and reports, for a local viewer (``lossweep train``)."""

    def __init__(self, path: str | None) -> None:
        self._file = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1)

    def row(self, row: Mapping[str, Any], *, checkpoint: bool) -> None:
        self._write({"event": "report", "time": time.time(), "checkpoint": checkpoint, **row})

    def event(self, name: str, **fields: Any) -> None:
        self._write({"event": name, "time": time.time(), **fields})

    def _write(self, record: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, default=str) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
