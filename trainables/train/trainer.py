"""The driver side of one Ray Train run: resources, the ``TorchTrainer``, its manifest and result.

``fit`` is what ``lossweep train`` and the Tune function trainable of a sweep call (the latter with a
callback that hands each report to Tune, ``search_spaces.run.report_forwarding``). It checks the request
against the cluster before starting, so a run the cluster can never place fails at once with what
was asked and what exists, instead of waiting on a placement group forever (Train V2's
``controller_failure_limit`` defaults to -1, i.e. retry for ever; it is bounded here too, for
clusters that shrink after the check).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainables.train.config import TrainConfig
from trainables.train.manifest import MANIFEST_FILE

#: Controller failures (a worker group that cannot start within Ray Train's start timeout, 60 s by
#: default) tolerated before the run fails. A few cover a sweep whose previous trial is still
#: releasing its workers; more would just hang a run whose resources went away.
DEFAULT_CONTROLLER_FAILURE_LIMIT = 2


class InsufficientResourcesError(RuntimeError):
    """The cluster can never satisfy the requested worker shape."""


@dataclass(frozen=True)
class Resources:
    """Shape of one run: ``workers`` DDP ranks, each holding ``cpus_per_worker`` CPUs (fractions
    allowed, for packing on a small machine) and ``gpus_per_worker`` GPUs."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"Resources.workers must be an integer >= 1, got {self.workers!r}")
        if not self.cpus_per_worker >= 0 or not math.isfinite(self.cpus_per_worker):
            raise ValueError(f"Resources.cpus_per_worker must be >= 0, got {self.cpus_per_worker!r}")
        if not self.gpus_per_worker >= 0 or not math.isfinite(self.gpus_per_worker):
            raise ValueError(f"Resources.gpus_per_worker must be >= 0, got {self.gpus_per_worker!r}")
        if self.cpus_per_worker == 0 and self.gpus_per_worker == 0:
            raise ValueError("a worker must hold some CPU or GPU (cpus_per_worker and gpus_per_worker are both 0)")

    def per_worker(self) -> dict[str, float]:
        """Ray resources of one worker."""
        out = {"CPU": float(self.cpus_per_worker)}
        if self.gpus_per_worker > 0:
            out["GPU"] = float(self.gpus_per_worker)
        return out

    def total(self) -> dict[str, float]:
        return {k: v * self.workers for k, v in self.per_worker().items()}

    def threads_per_worker(self) -> int:
        """torch intra-op threads for a CPU worker: the CPUs it holds, at least one."""
        return max(1, math.floor(self.cpus_per_worker))


def validate(config: TrainConfig, resources: Resources) -> None:
    """Checks that ``config`` can run with ``resources`` under Ray; ``ValueError`` naming the field."""
    if config.use_gpu and resources.gpus_per_worker <= 0:
        raise ValueError("config.use_gpu is set but Resources.gpus_per_worker is 0: give each worker a GPU")
    if resources.gpus_per_worker > 0 and not config.use_gpu:
        raise ValueError(
            f"Resources.gpus_per_worker={resources.gpus_per_worker} but config.use_gpu is False:"
            " the workers would hold GPUs without using them"
        )
    batch = config.data.batch_size
    if batch % resources.workers:
        raise ValueError(
            f"data.batch_size={batch} is the global batch and must be divisible by workers={resources.workers}"
        )
    try:
        config.data.micro_steps(batch // resources.workers)
    except ValueError as exc:
        raise ValueError(f"data.micro_batch: {exc}") from None
    if config.checkpoint_interval and config.checkpoint_interval % config.eval_interval:
        raise ValueError(
            f"checkpoint_interval={config.checkpoint_interval} must be a multiple of eval_interval="
            f"{config.eval_interval}: checkpoints are taken with reports"
        )
    if config.checkpoint_keep < 1:
        raise ValueError(f"checkpoint_keep must be >= 1, got {config.checkpoint_keep}")


def check_resources(resources: Resources, *, nodes: Sequence[Mapping[str, float]] | None = None) -> None:
    """Raises ``InsufficientResourcesError`` when no arrangement of the cluster's nodes can ever hold
    the run: one worker larger than every node, or all workers together larger than the cluster.

    ``nodes`` are the per-node resource totals; by default the autoscaler's maximum cluster shape
    when one is configured, else the live nodes of the connected cluster.
    """
    if nodes is None:
        nodes = _cluster_nodes()
    per_worker = resources.per_worker()
    asked = _fmt(per_worker)
    shapes = "; ".join(_fmt({k: v for k, v in n.items() if k in ("CPU", "GPU")}) or "{}" for n in nodes) or "none"
    fitting = [n for n in nodes if all(n.get(k, 0.0) + 1e-9 >= v for k, v in per_worker.items())]
    if not fitting:
        raise InsufficientResourcesError(
            f"asked for {resources.workers} worker(s) of {asked} each, but no node of the cluster is that large"
            f" (nodes: {shapes}). Ask for fewer CPUs or GPUs per worker, or add a larger node."
        )
    capacity = {
        k: sum(math.floor((n.get(k, 0.0) + 1e-9) / v) if v > 0 else 10**9 for n in fitting)
        for k, v in per_worker.items()
    }
    placeable = min(capacity.values())
    if placeable < resources.workers:
        have = _fmt({k: sum(n.get(k, 0.0) for n in nodes) for k in per_worker})
        raise InsufficientResourcesError(
            f"asked for {resources.workers} worker(s) of {asked} each ({_fmt(resources.total())} in all), but the"
            f" cluster has {have} in all and can hold at most {placeable} such worker(s) (nodes: {shapes})."
            " Use fewer workers, fewer CPUs per worker, or a larger cluster."
        )


def fit(
    config: TrainConfig,
    resources: Resources,
    *,
    name: str,
    storage_path: str | os.PathLike[str],
    callbacks: Sequence[Any] = (),
    max_failures: int = 1,
    manifest_dir: str | os.PathLike[str] | None = None,
    controller_failure_limit: int = DEFAULT_CONTROLLER_FAILURE_LIMIT,
    progress_file: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    lean: bool | None = None,
) -> dict[str, Any]:
    """Runs ``config`` on ``resources`` workers and returns the final metrics (the last report,
    all-reduced over ranks), plus ``checkpoint_path`` (the last checkpoint, if any) and ``run_path``.
    Checkpoints go under ``<storage_path>/<name>/``; ``storage_path`` is a local path or a pyarrow URI
    such as ``s3://bucket/prefix``. ``backend``: the process group's, by default NCCL on GPUs and gloo
    on CPUs (NCCL refuses two ranks on one GPU, so ranks sharing a GPU through fractional
    ``gpus_per_worker`` need gloo).

    ``lean`` (default: ``trainables.train.startup.lean_trials()``) runs it as
    ``trainables.train.torch_trainer.LeanTorchTrainer``, else as Ray's ``TorchTrainer``. The result's
    ``startup`` holds the run's start-up marks (``trainables.train.startup``), also written to the manifest.

    Uses the Ray connection of this process, or ``ray.init()`` (which honours ``RAY_ADDRESS``) when
    there is none. A diverged run returns normally with ``diverged=1``; a run that still fails after
    ``max_failures`` worker-group restarts raises Ray Train's ``TrainingFailedError``.
    """
    import ray

    from trainables.train import startup

    fit_called = time.time()
    validate(config, resources)
    if not ray.is_initialized():
        ray.init(logging_level="WARNING")
    check_resources(resources)
    manifest_path = Path(manifest_dir) / MANIFEST_FILE if manifest_dir is not None else None
    manifest: dict[str, Any] | None = None
    if manifest_path is not None:
        from trainables.train.manifest import build_manifest, write_manifest

        manifest = build_manifest(
            config,
            world_size=resources.workers,
            extra={"resources": asdict(resources), "run_name": name, "storage_path": str(storage_path)},
        )
        write_manifest(manifest_path, manifest)

    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from trainables.train.loop import train_loop
    from trainables.train.torch_trainer import LeanTorchTrainer

    storage = str(storage_path)
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
        Path(storage).mkdir(parents=True, exist_ok=True)
    loop_config: dict[str, Any] = {
        "train_config": config.to_dict(),
        "threads": None if config.use_gpu else resources.threads_per_worker(),
        "progress_file": str(progress_file) if progress_file is not None else None,
    }
    trainer_class = LeanTorchTrainer if (startup.lean_trials() if lean is None else lean) else TorchTrainer
    trainer = trainer_class(
        train_loop_per_worker=train_loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend=backend or ("nccl" if config.use_gpu else "gloo")),
        scaling_config=ScalingConfig(
            num_workers=resources.workers,
            use_gpu=config.use_gpu,
            resources_per_worker=resources.per_worker(),
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=max_failures, controller_failure_limit=controller_failure_limit),
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint_keep),
            callbacks=list(callbacks),
        ),
    )
    result = trainer.fit()
    final: dict[str, Any] = dict(result.return_value or result.metrics or {})
    final["checkpoint_path"] = result.checkpoint.path if result.checkpoint is not None else None
    final["run_path"] = result.path
    marks = {"fit_called": fit_called, **final.get(startup.STARTUP_KEY, {}), "fit_returned": time.time()}
    final[startup.STARTUP_KEY] = {**marks, **startup.durations(marks)}

    if manifest_path is not None and manifest is not None:
        from trainables.train.manifest import DATA_RECORD_KEYS, write_manifest

        # What only the workers know (the data's vocabulary and hash, the model size) arrives with
        # the reports.
        for key in ("vocab_size", "num_params", "corpus_hash", *DATA_RECORD_KEYS):
            if final.get(key) is not None:
                manifest[key] = final[key]
        manifest["run_path"] = final["run_path"]
        manifest[startup.STARTUP_KEY] = final[startup.STARTUP_KEY]
        write_manifest(manifest_path, manifest)
    return final


def _cluster_nodes() -> list[dict[str, float]]:
    import ray

    try:  # an autoscaling cluster (KubeRay) may grow to this shape; it is what can *ever* exist
        from ray._private.state import state as ray_state

        maximum = ray_state.get_max_resources_from_cluster_config()
    except Exception:  # private API: absent or failing means "no autoscaler config"
        maximum = None
    if maximum:
        return [{k: float(v) for k, v in maximum.items()}]
    return [
        {k: float(v) for k, v in node.get("Resources", {}).items()}
        for node in ray.nodes()
        if node.get("Alive") or node.get("alive")
    ]


def _fmt(resources: Mapping[str, float]) -> str:
    parts = [f"{k}: {v:g}" for k, v in sorted(resources.items())]
    return "{" + ", ".join(parts) + "}"
