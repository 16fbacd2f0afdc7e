"""Where a sweep trial's time goes: Ray's per-trial start-up and end, phase by phase, and the demo sweep.

Two arms, run one after the other in the same process on the same cluster: ``plain``
(``LOSSWEEP_LEAN_TRIALS=0``: Ray Train's own ``TorchTrainer`` and a fresh Tune trial actor per
trial, what lossweep did before) and ``lean`` (the default: docs/ray-knobs.md).

**Phases.** Per arm, a sweep of ``--trials`` identical demo trials (the demo's model, data and
budget; baseline at LR 3e-3; seeds 0..N-1) one at a time, so phases never overlap. Per trial, from
the run's start-up marks (``trainables.train.startup``, in ``trials/<id>/manifest.json``) and the Ray
processes the trial started (Ray's state API: each actor's class and its process's start):

- ``tune``: the previous trial's ``fit`` returned (the sweep's start for the first) → this trial's
  ``fit`` called: Tune's scheduling and, unless reused, the trial actor's start and imports;
- ``controller``: ``fit`` called → the Train controller's process started;
- ``workers``: controller process started → rank 0's process started;
- ``worker_init``: rank 0's process started → train loop entered (imports, train context, process group);
- ``data``, ``model`` (and optimizer), ``first_step``: the loop's own start;
- ``startup``: ``fit`` called → first step done (target <= 6 s); ``end``: last report → ``fit``
  returned (target <= 1 s); ``train``: first step → last report;
- ``ray_share``: 1 - train / (this trial's ``fit`` returned - the previous one's), the share of the
  sweep's wall time a trial spends outside its training loop (target <= 0.35);
- ``processes``: Ray worker processes started while the trial ran.

**Demo.** Per arm, the ``demo`` preset as it ships (12 trials, two at a time): wall time, and each
trial's final validation loss, which must be the same in both arms.

    .venv/bin/python benchmarks/bench_ray_train.py                  # 5 trials per arm, then the demo per arm
    .venv/bin/python benchmarks/bench_ray_train.py --trials 3 --skip-demo --json out.json
    .venv/bin/python benchmarks/bench_ray_train.py --throughput     # also Ray vs train-local tokens/s

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

from lossweep.local_cluster import activate, ensure_local_cluster, stop_local_cluster
from search_spaces.run import results
from search_spaces.run.sweep_dir import TRIAL_MANIFEST_FILE, TRIALS_DIR
from search_spaces.spec.presets import get_preset
from search_spaces.spec.sweep_spec import SweepSpec
from trainables.train.config import DataConfig, OptimConfig, TrainConfig
from trainables.train.startup import LEAN_TRIALS_ENV, STARTUP_KEY

ARMS = {"plain": "0", "lean": "1"}
PHASES = ("tune", "controller", "workers", "worker_init", "data", "model", "first_step", "startup", "train", "end")


def _arm_env(arm: str) -> None:
    os.environ[LEAN_TRIALS_ENV] = ARMS[arm]


def _phase_spec(trials: int) -> SweepSpec:
    doc = get_preset("demo").model_dump(mode="json")
    doc.update(name="bench-phases", methods=["baseline"], lr=[3e-3], seeds=list(range(trials)), max_concurrent_trials=1,
               confirm=None)
    doc["coefficients"] = {}
    return SweepSpec.model_validate(doc)


def _processes() -> dict[int, tuple[str, float]]:
    """pid → (actor class, process start time) of every Ray worker process the cluster has known."""
    from ray.util.state import list_actors, list_workers

    classes = {a.pid: a.class_name for a in list_actors(limit=10_000, raise_on_missing_output=False) if a.pid}
    out: dict[int, tuple[str, float]] = {}
    for w in list_workers(detail=True, limit=10_000, raise_on_missing_output=False):
        started = w.worker_launched_time_ms or w.start_time_ms
        if w.pid and started and w.worker_type == "WORKER":
            out[w.pid] = (classes.get(w.pid, "idle"), started / 1000.0)
    return out


def _trial_marks(sweep_dir: Path) -> list[dict[str, float]]:
    marks = []
    for manifest in (sweep_dir / TRIALS_DIR).glob(f"*/{TRIAL_MANIFEST_FILE}"):
        startup = json.loads(manifest.read_text()).get(STARTUP_KEY)
        if startup:
            marks.append(startup)
    return sorted(marks, key=lambda m: m["fit_called"])


def phases_once(arm: str, trials: int, work: Path, address: str) -> list[dict[str, float]]:
    from search_spaces.run.job import run

    _arm_env(arm)
    sweep_dir = work / f"phases-{arm}"
    started = time.time()
    before = set(_processes())
    run(_phase_spec(trials), str(sweep_dir), address=address)
    processes = {pid: p for pid, p in _processes().items() if pid not in before}
    rows: list[dict[str, float]] = []
    previous_end = started
    for m in _trial_marks(sweep_dir):
        window = [(cls, t) for cls, t in processes.values() if previous_end <= t <= m["fit_returned"]]
        controller = min((t for cls, t in window if cls == "TrainController"), default=float("nan"))
        worker = m.get("worker_process_started", float("nan"))
        train = m["last_report"] - m["first_step"]
        wall = m["fit_returned"] - previous_end
        rows.append({
            "tune": m["fit_called"] - previous_end,
            "controller": controller - m["fit_called"],
            "workers": worker - controller,
            "worker_init": m["loop_entered"] - worker,
            "data": m["data_ready"] - m["loop_entered"],
            "model": m["model_ready"] - m["data_ready"],
            "first_step": m["first_step"] - m["model_ready"],
            "startup": m["startup_s"],
            "train": train,
            "end": m["end_s"],
            "ray_share": 1.0 - train / wall,
            "processes": float(len(window)),
        })  # fmt: skip
        previous_end = m["fit_returned"]
    return rows


def demo_once(arm: str, work: Path, address: str) -> dict[str, Any]:
    from search_spaces.run.job import run

    _arm_env(arm)
    sweep_dir = work / f"demo-{arm}"
    t0 = time.time()
    run(get_preset("demo"), str(sweep_dir), address=address)
    wall = time.time() - t0
    trials = results.read_trials(sweep_dir).to_dict("records")
    finals = {f"{t['method']} lr={t['lr']:g}": t["final_val_loss"] for t in trials}
    return {"wall_s": wall, "final_val_loss": dict(sorted(finals.items()))}


def throughput(cache: str, storage: Path, preset: str, steps: int, seq_len: int, batch: int, rounds: int) -> dict:
    """Steady-state tokens/s of a 2-worker x 1-CPU Ray run against ``train-local`` with 2 threads."""
    import torch

    from trainables.train.engine import TrainingRun
    from trainables.train.trainer import Resources, fit

    config = TrainConfig(
        model=preset,
        data=DataConfig(seq_len=seq_len, batch_size=batch, eval_tokens=32, test_tokens=64, cache_dir=cache),
        optim=OptimConfig(lr=1e-3, warmup_steps=0),
        steps=steps,
        eval_interval=max(1, steps // 5),
    )

    def local(threads: int) -> list[dict[str, Any]]:
        torch.set_num_threads(threads)
        rows: list[dict[str, Any]] = []
        TrainingRun(config).run(rows.append)
        return rows

    def steady(rows: list[dict[str, Any]]) -> float:
        rates = [r["tokens_per_s"] for r in rows[1:]] or [rows[-1]["tokens_per_s"]]
        return statistics.median(rates)

    # Alternate train-local and Ray runs, so load drifts of a shared machine hit both alike.
    local_runs, ray_runs = [local(2)], []
    for i in range(rounds):
        progress = storage / f"throughput-{i}.jsonl"
        fit(config, Resources(workers=2), name=f"throughput-{i}", storage_path=storage, progress_file=progress)
        events = [json.loads(line) for line in progress.read_text().splitlines()]
        ray_runs.append([e for e in events if e["event"] == "report"])
        local_runs.append(local(2))
    locals_2 = [steady(rows) for rows in local_runs]
    rays = [steady(rows) for rows in ray_runs]
    return {
        "preset": preset, "steps": steps, "seq_len": seq_len, "global_batch": batch,
        "train_local_2_threads_tokens_per_s": locals_2, "train_local_1_thread_tokens_per_s": steady(local(1)),
        "ray_2x1cpu_tokens_per_s": rays, "ratio_of_medians": statistics.median(rays) / statistics.median(locals_2),
    }  # fmt: skip


def _table(rows_by_arm: dict[str, list[dict[str, float]]]) -> str:
    keys = (*PHASES, "ray_share", "processes")
    lines = ["| phase | " + " | ".join(f"{arm} (median of {len(r)})" for arm, r in rows_by_arm.items()) + " |"]
    lines.append("|---|" + "---|" * len(rows_by_arm))
    for key in keys:
        cells = [f"{statistics.median(r[key] for r in rows):.2f}" if rows else "-" for rows in rows_by_arm.values()]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="sequential trials per arm for the phase table")
    parser.add_argument("--skip-demo", action="store_true", help="do not run the demo sweep per arm")
    parser.add_argument("--throughput", action="store_true", help="also compare Ray and train-local tokens/s")
    parser.add_argument("--throughput-preset", default="cpu-small")
    parser.add_argument("--throughput-steps", type=int, default=30)
    parser.add_argument("--throughput-rounds", type=int, default=3, help="Ray runs, each followed by a local one")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.trials < 2:
        parser.error("--trials must be at least 2 (the first trial of a sweep also pays the sweep's start)")

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    from trainables.data.tokens import load_dataset

    # Tokenise the demo's corpus once, outside the timings (the workers read the same cache).
    demo_data = get_preset("demo").data
    load_dataset(DataConfig(corpus=demo_data.corpus, tokenizer=demo_data.tokenizer, seq_len=demo_data.seq_len))
    cluster = ensure_local_cluster(work / "state", num_cpus=2)
    activate(cluster)
    import ray

    summary: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "ray": ray.__version__, "loadavg_at_start": os.getloadavg(),
        },
    }  # fmt: skip
    try:
        phases: dict[str, list[dict[str, float]]] = {}
        for arm in ARMS:
            phases[arm] = phases_once(arm, args.trials, work, cluster.address)
            for i, row in enumerate(phases[arm]):
                print(f"{arm:>5} trial {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
        summary["phases"] = phases
        # The first trial of a sweep also pays the sweep's own start: the medians are over the rest.
        print(_table({arm: rows[1:] for arm, rows in phases.items()}), flush=True)
        if not args.skip_demo:
            summary["demo"] = {arm: demo_once(arm, work, cluster.address) for arm in ARMS}
            plain, lean = summary["demo"]["plain"], summary["demo"]["lean"]
            summary["demo"]["same_results"] = plain["final_val_loss"] == lean["final_val_loss"]
            summary["demo"]["lean_over_plain"] = lean["wall_s"] / plain["wall_s"]
            print(json.dumps(summary["demo"], indent=2), flush=True)
        if args.throughput:
            os.environ[LEAN_TRIALS_ENV] = ARMS["lean"]
            summary["throughput"] = throughput(
                str(work / "cache"),
                work / "runs",
                args.throughput_preset,
                args.throughput_steps,
                128,
                16,
                args.throughput_rounds,
            )
            print(json.dumps(summary["throughput"], indent=2), flush=True)
        summary["machine"]["loadavg_at_end"] = os.getloadavg()
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
    finally:
        ray.shutdown()
        stop_local_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
