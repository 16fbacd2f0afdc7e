"""Downstream evaluation time per 1,000 questions of the local next-line task, at ``tiny`` and
``cpu-small``, through the whole harness path (``trainables.downstream.evaluate``: building the task's
requests, the adapter's batched log-likelihoods, the harness's scoring).

Each question is four log-likelihood requests (one per choice) of up to ``seq_len`` tokens. The weights
do not change the cost, so an untrained model of each preset is timed. The presets are interleaved
round by round, each round evaluating ``--questions`` questions; best and median over the rounds are
reported, with the machine and its load average.

    .venv/bin/python benchmarks/bench_downstream.py                       # 3 rounds of 100 questions
    .venv/bin/python benchmarks/bench_downstream.py --rounds 5 --json out.json

Needs the ``lm-eval`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.downstream.checkpoint import build_model
from trainables.downstream.evaluate import evaluate
from trainables.downstream.lm import LossweepLM
from trainables.downstream.local_tasks import NEXT_LINE
from trainables.train.config import DataConfig, TrainConfig

PRESETS = ("tiny", "cpu-small")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    lms = {}
    for preset in PRESETS:
        config = TrainConfig(model=preset, data=DataConfig(seq_len=args.seq_len))
        model, tokenizer = build_model(config, device=args.device)
        lms[preset] = LossweepLM(
            model, tokenizer, max_length=args.seq_len, batch_size=args.batch_size, device=args.device
        )
    evaluate(lms[PRESETS[0]], [NEXT_LINE], limit=4)  # warm-up: the task's data, the harness's imports
    times: dict[str, list[float]] = {p: [] for p in PRESETS}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for preset in PRESETS[r % 2 :] + PRESETS[: r % 2]:  # alternate who goes first
            t0 = time.perf_counter()
            evaluate(lms[preset], [NEXT_LINE], limit=args.questions)
            times[preset].append((time.perf_counter() - t0) * 1000 / args.questions)
        load.append(os.getloadavg()[0])
    out: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "questions_per_round": args.questions,
        "rounds": args.rounds,
        "load_avg_1m": {"min": min(load), "max": max(load)},
        "s_per_1k_questions": {
            p: {"best": min(ts), "median": statistics.median(ts), "max": max(ts)} for p, ts in times.items()
        },
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
