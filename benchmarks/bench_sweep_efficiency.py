"""Sweep efficiency: TPE + ASHA against a grid on a SimReg-style space, at tiny scale.

Both arms search SimReg's weight and the learning rate for the ``tiny`` model on the stdlib corpus:

- grid: ``--grid-points`` log-spaced values per axis (weight 1e-3..1, LR 1e-3..1e-1), every trial to the end;
- TPE + ASHA: Optuna TPE (seeded) over the same ranges (log-uniform), ``--tpe-samples`` trials, ASHA on
  tokens (reduction factor 3, grace period a ninth of the budget).

Reported: the grid's best validation CE; the tokens TPE + ASHA had spent when one of its reports first
came within 1 % of it, as a fraction of all the grid's tokens (target <= 1/3). Tokens are counted in
trial start order: all tokens of earlier trials plus the reaching trial's own up to that report (with
``max_concurrent_trials`` > 1 a concurrent trial's tokens may be counted a little late; with 1 it is
exact). Ray overhead per trial: (trial wall time - training time reported by the workers) / trial wall
time, the median over both arms' trials.

    .venv/bin/python benchmarks/bench_sweep_efficiency.py                       # 3x3 grid, 9 TPE samples
    .venv/bin/python benchmarks/bench_sweep_efficiency.py --grid-points 4 --tpe-samples 12 --steps 200 --json out.json

Starts its own local cluster (free ports) in a temporary dir and removes both at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lossweep.local_cluster import ensure_local_cluster, ray_env, stop_local_cluster
from search_spaces.run import results


def _logspace(low: float, high: float, n: int) -> list[float]:
    if n == 1:
        return [math.sqrt(low * high)]
    return [float(f"{low * (high / low) ** (i / (n - 1)):.3g}") for i in range(n)]


def base_spec(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": {"preset": args.model},
        "data": {
            "corpus": "stdlib",
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "eval_tokens": 256,
            "test_tokens": 256,
        },
        "budget": {"steps": args.steps, "warmup_steps": max(1, args.steps // 10), "eval_interval": args.steps // 8},
        "methods": ["simreg"],
        "resources": {"workers": 1, "cpus_per_worker": 1},
        "max_concurrent_trials": args.concurrency,
    }


def run_sweep(spec: dict[str, Any], sweep_dir: Path, env: dict[str, str]) -> float:
    spec_path = sweep_dir.parent / f"{sweep_dir.name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "search_spaces.run.job", str(spec_path), str(sweep_dir)], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"sweep {sweep_dir.name} failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


def tokens_to_reach(sweep_dir: Path, target: float) -> tuple[int | None, int]:
    """(tokens spent when a report first reached ``target``, or None; all tokens of the sweep)."""
    trials = results.read_trials(sweep_dir)
    metrics = results.read_metrics(sweep_dir)
    spent = 0
    reached = None
    for trial_id in trials["trial_id"]:  # trials.parquet keeps the trials in creation (= start) order
        mine = metrics[(metrics["trial_id"] == trial_id) & (metrics["diverged"] == 0)].sort_values("step")
        hit = mine[mine["val_loss"] <= target]
        if reached is None and len(hit):
            reached = spent + int(hit["tokens"].iloc[0])
        spent += int(trials.loc[trials["trial_id"] == trial_id, "tokens"].fillna(0).iloc[0])
    return reached, spent


def overheads(sweep_dir: Path) -> list[float]:
    trials = results.read_trials(sweep_dir)
    metrics = results.read_metrics(sweep_dir)
    out = []
    for row in trials.to_dict("records"):
        mine = metrics[metrics["trial_id"] == row["trial_id"]]
        if len(mine) and row.get("wall_time_s"):
            train_s = float(mine["elapsed_s"].max())
            out.append(max(0.0, (row["wall_time_s"] - train_s) / row["wall_time_s"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grid-points", type=int, default=3)
    parser.add_argument("--tpe-samples", type=int, default=9)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    cluster = ensure_local_cluster(work / "ray", num_cpus=args.cpus)
    env = {**os.environ, **ray_env(cluster)}
    try:
        base = base_spec(args)
        weights = _logspace(1e-3, 1.0, args.grid_points)
        lrs = _logspace(1e-3, 1e-1, args.grid_points)
        grid = {**base, "name": "grid", "lr": lrs, "search": {"algorithm": "grid"},
                "coefficients": {"simreg_weight": weights, "simreg_temperature": 0.1}}  # fmt: skip
        tpe = {**base, "name": "tpe-asha",
               "lr": {"distribution": "loguniform", "low": 1e-3, "high": 1e-1},
               "coefficients": {"simreg_weight": {"distribution": "loguniform", "low": 1e-3, "high": 1.0},
                                "simreg_temperature": 0.1},
               "search": {"algorithm": "tpe", "num_samples": args.tpe_samples,
                          "startup_trials": max(2, args.tpe_samples // 3), "seed": 0},
               "scheduler": {"name": "asha", "reduction_factor": 3}}  # fmt: skip
        grid_s = run_sweep(grid, work / "grid", env)
        tpe_s = run_sweep(tpe, work / "tpe", env)
        grid_trials = results.read_trials(work / "grid")
        grid_best = float(grid_trials["best_val_loss"].min())
        _, grid_tokens = tokens_to_reach(work / "grid", grid_best)
        reached, tpe_tokens = tokens_to_reach(work / "tpe", grid_best * 1.01)
        tpe_trials = results.read_trials(work / "tpe")
        over = overheads(work / "grid") + overheads(work / "tpe")
        out = {
            "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version()},
            "args": vars(args) | {"json": str(args.json) if args.json else None},
            "grid": {"trials": len(grid_trials), "tokens": grid_tokens, "best_val_loss": grid_best, "wall_s": grid_s},
            "tpe_asha": {
                "trials": len(tpe_trials),
                "tokens": tpe_tokens,
                "best_val_loss": float(tpe_trials["best_val_loss"].min()),
                "statuses": tpe_trials["status"].value_counts().to_dict(),
                "tokens_to_1pct_of_grid_best": reached,
                "fraction_of_grid_tokens": None if reached is None else reached / grid_tokens,
                "wall_s": tpe_s,
            },
            "ray_overhead_share": {
                "median": statistics.median(over),
                "min": min(over),
                "max": max(over),
                "trials": len(over),
            },
        }
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    finally:
        stop_local_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
