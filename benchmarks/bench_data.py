"""Data-path throughput: the sampler reading windows from token shards, and ``data prepare``.

1. Sampler: tokens/s that ``BatchSampler.batch`` delivers on one core (torch and numpy limited to
   one thread) from a synthetic shard set (uniform ids, V = 50,304 so uint16, default 100M tokens in
   32M-token shards), for the OEC trial shape (seq 2048, 64 sequences per rank) and the laptop
   default (seq 128, batch 16), interleaved round by round with the same sampler over an in-memory
   array of the same ids (the cost of the memory map). The set has just been written, so its pages
   are in the page cache: this is the warm-cache figure; a cold first epoch reads from the disk.
2. ``data prepare``: wall time and tokens/s of preparing the built-in corpus (``stdlib``) with the
   ``bytes`` tokenizer and with a BPE tokenizer file (``bpe:N`` trained once beforehand, untimed, then
   loaded as ``hf:PATH`` — the GPT-2 case), on a private local Ray cluster (or ``--address``), the
   whole call (listing, Ray Data start-up, writing) timed, ``--prepare-runs`` runs each.

    .venv/bin/python benchmarks/bench_data.py                         # both parts
    .venv/bin/python benchmarks/bench_data.py --skip-prepare --rounds 30 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.data.sampler import BatchSampler
from trainables.data.shard_writer import synthetic_shards
from trainables.data.shards import open_shards

SHAPES = {"oec (T=2048, B=64)": (2048, 64), "laptop (T=128, B=16)": (128, 16)}


def bench_sampler(root: Path, rounds: int, steps: int) -> dict[str, Any]:
    shards = open_shards(root)
    in_memory = np.asarray(shards.train[:])  # one copy of the ids, for the comparison only
    out: dict[str, Any] = {}
    for label, (seq_len, batch) in SHAPES.items():
        samplers = {
            "shards (memmap)": BatchSampler(shards.train, seq_len=seq_len, global_batch=batch, seed=0),
            "in-memory array": BatchSampler(in_memory, seq_len=seq_len, global_batch=batch, seed=0),
        }
        tokens_per_batch = seq_len * batch
        rates: dict[str, list[float]] = {k: [] for k in samplers}
        step = {k: 0 for k in samplers}
        for r in range(rounds):
            names = list(samplers)[r % 2 :] + list(samplers)[: r % 2]
            for name in names:
                t0 = time.perf_counter()
                for _ in range(steps):
                    samplers[name].batch(step[name])
                    step[name] += 1
                rates[name].append(steps * tokens_per_batch / (time.perf_counter() - t0))
        out[label] = {k: {"best": max(v), "median": statistics.median(v)} for k, v in rates.items()}
        for name, v in out[label].items():
            print(f"{label:>22} {name:>16}: best {v['best'] / 1e6:8.1f}M tokens/s, median {v['median'] / 1e6:8.1f}M",
                  flush=True)  # fmt: skip
    return out


def bench_prepare(tokenizers: list[str], runs: int, address: str | None, workdir: Path) -> dict[str, Any]:
    import ray

    from lossweep.local_cluster import ensure_local_cluster, init_driver, stop_local_cluster
    from trainables.data.prepare import make_plan, prepare

    cluster = None
    if address is None:
        cluster = ensure_local_cluster(workdir / "ray-state")
        address = cluster.address
    init_driver(address, cluster)
    out: dict[str, Any] = {}
    try:
        for spec in tokenizers:
            if spec.startswith("bpe:"):  # train it once, untimed: the timed runs load it as a file, as hf:PATH
                from trainables.data.prepare import build_tokenizer, find_units

                _, blob = build_tokenizer(spec, find_units("stdlib"), "text")
                (workdir / "bpe.json").write_bytes(blob)
                spec = f"hf:{workdir / 'bpe.json'}"
            walls, tokens = [], 0
            for i in range(runs):
                t0 = time.perf_counter()
                manifest = prepare(make_plan("stdlib", spec), str(workdir / f"prep-{len(out)}-{i}"))
                walls.append(time.perf_counter() - t0)
                tokens = manifest["splits"]["train"]["tokens"] + manifest["splits"]["val"]["tokens"]
                source_mb = manifest["source"]["bytes"] / 1e6
            out[spec] = {
                "tokens": tokens,
                "source_mb": source_mb,
                "wall_s": walls,
                "tokens_per_s_best": tokens / min(walls),
                "tokens_per_s_median": tokens / statistics.median(walls),
            }
            print(f"prepare stdlib {spec[-12:]:>12}: {tokens:,} tokens from {source_mb:.1f} MB, wall min "
                  f"{min(walls):.1f} s median {statistics.median(walls):.1f} s -> "
                  f"{tokens / min(walls) / 1e6:.2f}M tokens/s best", flush=True)  # fmt: skip
    finally:
        ray.shutdown()
        if cluster is not None:
            stop_local_cluster(cluster)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=100_000_000, help="training tokens of the synthetic shard set")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=5, help="batches per round and variant")
    p.add_argument("--skip-prepare", action="store_true")
    p.add_argument("--skip-sampler", action="store_true")
    p.add_argument("--prepare-runs", type=int, default=3)
    p.add_argument("--tokenizers", default="bytes,bpe:4096")
    p.add_argument("--address", default=None, help="Ray address for the prepare part (default: a private cluster)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    result: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                          "load_before": os.getloadavg()}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work = Path(tmp)
        if not args.skip_sampler:
            synthetic_shards(work / "synthetic", train_tokens=args.tokens, val_tokens=1 << 20, shard_tokens=1 << 25)
            result["sampler"] = bench_sampler(work / "synthetic", args.rounds, args.steps)
        if not args.skip_prepare:
            result["prepare"] = bench_prepare(args.tokenizers.split(","), args.prepare_runs, args.address, work)
    result["machine"]["load_after"] = os.getloadavg()
    print(f"load average before {result['machine']['load_before']}, after {result['machine']['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
