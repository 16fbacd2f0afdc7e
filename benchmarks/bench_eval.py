"""What evaluation costs and what it resolves, at the shipped laptop scales.

For each trial shape — the ``demo`` preset, every other preset at its default laptop scale, and a
``lossweep train-local`` run with the default flags — one trial (baseline, the demo's moderate
learning rate 3e-3, on the built-in corpus) is trained in this process on one core, as a sweep's
trial trains it: periodic validation evaluations and the test evaluation at the end. Printed per shape
and seed: the final test CE and its standard error over windows (the default ``data.test_tokens`` is
sized so that it stays <= 0.01 nats), the validation SE, and the evaluation's share of the trial's
training time (validation + test, from the run's ``eval_s`` against the wall time of ``run()``). A
trial under Ray also spends its start-up (about 7-15 s) outside both, so its share is lower than this.

    .venv/bin/python benchmarks/bench_eval.py                 # every shape, seed 0
    .venv/bin/python benchmarks/bench_eval.py --seeds 0 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces.spec.presets import get_preset
from search_spaces.spec.translate import train_config
from trainables.train.config import DataConfig, OptimConfig, TrainConfig
from trainables.train.engine import TrainingRun

LR = 3e-3


def shapes() -> dict[str, TrainConfig]:
    """The distinct trial shapes the project ships (presets other than the demo share one laptop scale)."""
    demo = train_config(get_preset("demo"), {"method": "baseline", "lr": LR})
    preset = train_config(get_preset("oec-lr-sensitivity"), {"method": "baseline", "lr": LR})
    # `lossweep train-local` with its default flags: seq 128, batch 16, 200 steps, warmup 10, eval every 50
    cli = TrainConfig(data=DataConfig(), optim=OptimConfig(lr=LR, warmup_steps=10), steps=200, eval_interval=50)
    return {"demo": demo, "presets (laptop scale)": preset, "train-local defaults": cli}


def measure(config: TrainConfig) -> dict[str, Any]:
    run = TrainingRun(config)
    t0 = time.perf_counter()
    final = run.run(lambda row: None)
    wall = time.perf_counter() - t0
    return {
        "steps": config.steps,
        "seq_len": config.data.seq_len,
        "batch_size": config.data.batch_size,
        "eval_interval": config.eval_interval,
        "eval_tokens": run.eval_windows.num_tokens,
        "test_tokens": final["test_tokens"],
        "val_ce": final["val_loss"],
        "val_ce_se": final["val_ce_se"],
        "test_ce": final["test_ce"],
        "test_ce_se": final["test_ce_se"],
        "run_s": wall,
        "eval_s": run.eval_s,
        "eval_share": run.eval_s / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", default=None, help="shape names to run (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"load_avg": os.getloadavg(), "platform": platform.platform(), "rows": []}
    for name, config in shapes().items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            row = {"shape": name, "seed": seed, **measure(TrainConfig.from_dict({**config.to_dict(), "seed": seed}))}
            out["rows"].append(row)
            print(
                f"{name:24s} seed {seed}: test CE {row['test_ce']:.4f} ± {row['test_ce_se']:.4f} "
                f"({row['test_tokens']:,} tokens), val CE ± {row['val_ce_se']:.4f} ({row['eval_tokens']:,} tokens), "
                f"evaluation {row['eval_s']:.1f} s of {row['run_s']:.1f} s = {100 * row['eval_share']:.0f} %",
                flush=True,
            )
    out["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
