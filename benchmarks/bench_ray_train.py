"""Start-up and throughput of one Ray Train run (``trainables.trainer.fit``) against ``train-local``.

Start-up: seconds from calling ``fit`` to rank 0 starting to train (controller, worker actors, gloo
process group, data and model built), for a 2-worker run of the ``tiny`` preset, with Ray Train's
default knobs and with the knobs lossweep sets (``lossweep.local_cluster.CLUSTER_ENV``), the two
arms interleaved run by run so a shared machine's load drifts hit both alike. ``end_s`` is the time
from the last report to ``fit`` returning.

Throughput: steady-state tokens/s (report windows after the first) of a 2-worker x 1-CPU Ray run
against the engine in one process with 2 torch threads (``lossweep train-local``), same config.

    .venv/bin/python benchmarks/bench_ray_train.py                     # 5 start-ups per arm, cpu-small T=128 B=16
    .venv/bin/python benchmarks/bench_ray_train.py --startups 3 --throughput-steps 20 --json out.json

Starts its own local cluster (2 CPUs, free ports) in a temporary dir and removes both at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lossweep.local_cluster import CLUSTER_ENV, activate, ensure_local_cluster, stop_local_cluster
from trainables.config import DataConfig, OptimConfig, TrainConfig

# Ray Train's own defaults for the knobs lossweep changes; set explicitly, the driver propagates them
# to the controller and workers, overriding the cluster's environment for that run only.
RAY_DEFAULTS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "2.0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1"}
ARMS = {"ray-defaults": RAY_DEFAULTS, "lossweep": {k: CLUSTER_ENV[k] for k in RAY_DEFAULTS}}


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def startup_once(arm: str, cache: str, storage: Path, index: int) -> dict[str, float]:
    from trainables.trainer import Resources, fit

    os.environ.update(ARMS[arm])
    config = TrainConfig(
        model="tiny",
        data=DataConfig(seq_len=32, batch_size=4, eval_batches=1, cache_dir=cache),
        steps=5,
        eval_interval=5,
    )
    progress = storage / f"startup-{arm}-{index}.jsonl"
    t0 = time.time()
    fit(config, Resources(workers=2), name=f"startup-{arm}-{index}", storage_path=storage, progress_file=progress)
    t1 = time.time()
    events = _events(progress)
    started = next(e for e in events if e["event"] == "started")
    last_report = max(e["time"] for e in events if e["event"] == "report")
    return {
        "startup_s": started["time"] - t0,
        "end_s": t1 - last_report,
        "total_s": t1 - t0,
        "rank0_startup_cpu_s": started["cpu_s"],
        "loadavg_1m": os.getloadavg()[0],
    }


def throughput(
    cache: str, storage: Path, preset: str, steps: int, seq_len: int, batch: int, rounds: int
) -> dict[str, Any]:
    import torch

    from trainables.engine import TrainingRun
    from trainables.trainer import Resources, fit

    os.environ.update(ARMS["lossweep"])
    interval = max(1, steps // 5)
    config = TrainConfig(
        model=preset,
        data=DataConfig(seq_len=seq_len, batch_size=batch, eval_batches=1, cache_dir=cache),
        optim=OptimConfig(lr=1e-3, warmup_steps=0),
        steps=steps,
        eval_interval=interval,
    )

    def local(threads: int) -> list[dict[str, Any]]:
        torch.set_num_threads(threads)
        rows: list[dict[str, Any]] = []
        TrainingRun(config).run(rows.append)
        return rows

    # Alternate train-local (2 threads) and Ray (2 workers x 1 thread) runs, so load drifts of a
    # shared machine hit both alike; each figure is the median over its runs.
    local_runs, ray_runs = [local(2)], []
    for i in range(rounds):
        progress = storage / f"throughput-{i}.jsonl"
        fit(config, Resources(workers=2, cpus_per_worker=1), name=f"throughput-{i}", storage_path=storage,
            progress_file=progress)  # fmt: skip
        ray_runs.append([e for e in _events(progress) if e["event"] == "report"])
        local_runs.append(local(2))
    one_thread = local(1)

    def steady(rows: list[dict[str, Any]]) -> float:
        rates = [r["tokens_per_s"] for r in rows[1:]] or [rows[-1]["tokens_per_s"]]
        return statistics.median(rates)

    locals_2 = [steady(rows) for rows in local_runs]
    rays = [steady(rows) for rows in ray_runs]
    local_med, ray_med = statistics.median(locals_2), statistics.median(rays)
    return {
        "preset": preset, "steps": steps, "seq_len": seq_len, "global_batch": batch,
        "train_local_2_threads_tokens_per_s": locals_2, "train_local_1_thread_tokens_per_s": steady(one_thread),
        "ray_2x1cpu_tokens_per_s": rays, "ratio_of_medians": ray_med / local_med,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--startups", type=int, default=5, help="start-up runs per arm")
    parser.add_argument("--throughput-preset", default="cpu-small")
    parser.add_argument("--throughput-steps", type=int, default=30)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--throughput-rounds", type=int, default=3, help="Ray runs, each followed by a local one")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    cluster = ensure_local_cluster(work / "state", num_cpus=2)
    activate(cluster)
    import ray

    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        from trainables.data import load_dataset

        cache = str(work / "cache")
        load_dataset(DataConfig(seq_len=32, batch_size=4, cache_dir=cache))  # tokenise once, outside timings
        storage = work / "runs"
        results: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
        startup_once("lossweep", cache, storage, -1)  # warm the OS page cache for the first arm too
        for i in range(0 if args.skip_startup else args.startups):
            for arm in ARMS:
                results[arm].append(startup_once(arm, cache, storage, i))
                print(f"{arm:>13} #{i}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[arm][-1].items()))
        summary: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "ray": ray.__version__,
                "loadavg_at_end": os.getloadavg(),
            },
            "startup": {
                arm: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                for arm, rows in results.items()
                if rows
            },
            "startup_runs": results,
        }
        if not args.skip_throughput:
            summary["throughput"] = throughput(
                cache,
                storage,
                args.throughput_preset,
                args.throughput_steps,
                args.seq_len,
                args.batch_size,
                args.throughput_rounds,
            )
        summary["machine"]["loadavg_at_end"] = os.getloadavg()
        print(json.dumps({k: v for k, v in summary.items() if k != "startup_runs"}, indent=2))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
    finally:
        ray.shutdown()
        stop_local_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
