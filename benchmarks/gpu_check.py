"""The GPU path in one short run (about 6-8 minutes on one H100/H200-class GPU).

1. **Engine** (in this process, no Ray): ``oec-16m`` and ``oec-57m`` for ``--steps`` steps in bf16 on
   synthetic tokens, compiled (the CUDA default): tokens/s, model FLOP/s and MFU, peak device memory
   against ``trainables.model.memory``'s estimate, compile time, whether the flash attention kernel runs.
2. **Loss variants** (``--ratio-model``, default ``oec-57m``, T = ``--seq-len``): baseline, z-loss, μ-loss,
   μ-centering, soft-cap and SimReg, one run each, timed in rounds of ``--ratio-steps`` steps with the
   variants interleaved in a rotating order; best and median step, ratio to the baseline's.
3. **Ray Train**: the same two models through ``trainables.train.trainer`` on a private local Ray cluster,
   1 worker over NCCL, then 2 workers: one GPU each over NCCL when there are two GPUs, else both on
   the one GPU (``gpus_per_worker: 0.5``) over gloo, because NCCL refuses two ranks on one device.

    .venv/bin/python benchmarks/gpu_check.py                          # everything, defaults below
    .venv/bin/python benchmarks/gpu_check.py --skip-ray --json out.json

Targets (BENCHMARKS.md): MFU >= 40 % at oec-57m bf16 on an H100/H200-class GPU; μ-loss and μ-centering
<= 1.01x, z-loss <= 1.02x, SimReg <= 1.10x the baseline step. Without a CUDA device it refuses with
one line and exit status 2.
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

from trainables.losses.config import LossConfig
from trainables.model.config import GPT2_VOCAB
from trainables.train.config import DataConfig, OptimConfig, TrainConfig

#: The loss variants timed against the baseline, with the target ratio of each (None: no target).
VARIANTS: dict[str, float | None] = {
    "baseline": None,
    "z_loss": 1.02,
    "mu_loss": 1.01,
    "mu_centering": 1.01,
    "softcap": None,
    "simreg": 1.10,
}
MFU_TARGET = 0.40
REFUSAL = "gpu_check: no CUDA device is visible to torch (torch.cuda.is_available() is False); this check needs a GPU"


def cuda_refusal() -> str | None:
    """The one-line refusal when this process sees no CUDA device, else None."""
    import torch

    return None if torch.cuda.is_available() else REFUSAL


def synthetic_corpus(directory: Path, *, tokens: int, vocab: int = GPT2_VOCAB, seed: int = 0) -> str:
    """The data of this check, and its only source: a ``shards:`` set of uniformly random token ids
    below ``vocab`` (the same memory-mapped path a prepared corpus takes), nine tenths for training.
    Returns the corpus spec for ``DataConfig.corpus``. Throughput does not depend on what the ids are;
    the loss stays near ln V."""
    from trainables.data.shard_writer import synthetic_shards

    out = directory / "shards"
    synthetic_shards(out, train_tokens=tokens - tokens // 10, val_tokens=tokens // 10, vocab_size=vocab, seed=seed,
                     overwrite=True)  # fmt: skip
    return f"shards:{out}"


def _config(args: argparse.Namespace, corpus: str, model: str, method: str = "baseline", **kw: Any) -> TrainConfig:
    steps = kw.pop("steps", args.steps)
    use_gpu = kw.pop("use_gpu", True)
    return TrainConfig(
        model=model,
        data=DataConfig(
            corpus=corpus, seq_len=args.seq_len, batch_size=args.batch_size, eval_tokens=32, test_tokens=64
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=min(50, steps // 4)),
        loss=LossConfig.from_method(method, {}),
        steps=steps,
        eval_interval=max(1, steps // 2),
        precision="bf16",
        use_gpu=use_gpu,
        **kw,
    )


def _gib(n: float) -> float:
    return n / 2**30


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _fresh_compile_caches(device: Any) -> None:
    """Forget the graphs of the previous phase. Every run of this process compiles the same
    ``GPT.forward``; past Dynamo's per-function cache limit (8 graphs) it would silently run eagerly,
    which a sweep (one process per trial) never meets but this script would. Inductor's on-disk cache
    still serves graphs compiled before."""
    import torch

    if device.type == "cuda":
        torch._dynamo.reset()
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in 2.6
        setattr(config, name, max(getattr(config, name), 64))


def _peak_memory_gib(device: Any) -> float | None:
    import torch

    return _gib(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


# ------------------------------------------------------------------------------------------ engine


def engine_throughput(args: argparse.Namespace, corpus: str, model: str, device: Any) -> dict[str, Any]:
    """One bf16 run of ``model`` in this process (compiled on CUDA); the last report's figures."""
    from trainables.model.attention import flash_kernel_runs
    from trainables.model.memory import estimate_rank_memory
    from trainables.train.engine import TrainingRun

    _reset_memory(device)
    _fresh_compile_caches(device)
    rows: list[dict[str, Any]] = []
    run = TrainingRun(_config(args, corpus, model, use_gpu=device.type == "cuda"), device=device)
    run.run(rows.append)
    last = rows[-1]
    estimate = estimate_rank_memory(run.model_config, sequences=args.batch_size, seq_len=args.seq_len)
    out = {
        "model": model,
        "params": run.module.num_params(),
        "tokens_per_step": run.tokens_per_step,
        "steps": run.step,
        "diverged": last.get("diverged"),
        "tokens_per_s": last.get("tokens_per_s"),
        "model_flops_per_s": last.get("model_flops_per_s"),
        "mfu": last.get("mfu"),
        "peak_device": run.peak_device,
        "compile_s": last.get("compile_s"),
        "gpu_mem_peak_gib": _peak_memory_gib(device),
        "gpu_mem_estimate_gib": estimate.gib(),
        "flash_attention": flash_kernel_runs(run.model_config, device),
        "val_loss": last.get("val_loss"),
    }
    del run
    return out


def variant_ratios(args: argparse.Namespace, corpus: str, device: Any) -> dict[str, Any]:
    """Step time of each loss variant on ``args.ratio_model``, interleaved, against the baseline."""
    from trainables.train.engine import TrainingRun

    _reset_memory(device)
    _fresh_compile_caches(device)
    budget = args.ratio_warmup + args.ratio_rounds * args.ratio_steps + 1
    gpu = device.type == "cuda"
    runs = {
        v: TrainingRun(_config(args, corpus, args.ratio_model, v, steps=budget, use_gpu=gpu), device=device)
        for v in VARIANTS
    }
    compile_s: dict[str, float] = {}
    for name, run in runs.items():  # compile and warm up each variant outside the timings
        t0 = time.perf_counter()
        for _ in range(args.ratio_warmup):
            run.train_step()
        _sync(device)
        compile_s[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    for r in range(args.ratio_rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            run = runs[name]
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.ratio_steps):
                run.train_step()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / args.ratio_steps)
    best_base, med_base = min(times["baseline"]), statistics.median(times["baseline"])
    table = {
        name: {
            "best_step_ms": 1e3 * min(t),
            "median_step_ms": 1e3 * statistics.median(t),
            "ratio_best": min(t) / best_base,
            "ratio_median": statistics.median(t) / med_base,
            "target": VARIANTS[name],
            "warmup_and_compile_s": compile_s[name],
        }
        for name, t in times.items()
    }
    del runs
    return {"model": args.ratio_model, "seq_len": args.seq_len, "batch_size": args.batch_size, "variants": table}


# --------------------------------------------------------------------------------------------- Ray


def ray_runs(args: argparse.Namespace, corpus: str, work: Path) -> list[dict[str, Any]]:
    """Each model through Ray Train: 1 worker (NCCL), then 2 workers (see the module docstring)."""
    import torch

    from lossweep.local_cluster import activate, ensure_local_cluster, stop_local_cluster
    from trainables.train.trainer import Resources, fit

    gpus = torch.cuda.device_count()
    shapes: list[tuple[str, Resources, str]] = [("1 worker x 1 GPU", Resources(workers=1, gpus_per_worker=1), "nccl")]
    if gpus >= 2:
        shapes.append(("2 workers x 1 GPU", Resources(workers=2, gpus_per_worker=1), "nccl"))
    else:
        shapes.append(("2 workers sharing 1 GPU", Resources(workers=2, gpus_per_worker=0.5), "gloo"))
    cpus = max(2, min(os.cpu_count() or 2, 8))
    cluster = ensure_local_cluster(work / "ray", num_cpus=cpus, num_gpus=gpus)
    activate(cluster)
    import ray

    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    out: list[dict[str, Any]] = []
    try:
        for model in args.models:
            for label, resources, backend in shapes:
                name = f"gpu-check-{model}-{resources.workers}w"
                t0 = time.perf_counter()
                row = fit(
                    _config(args, corpus, model),
                    resources,
                    name=name,
                    storage_path=work / "runs",
                    backend=backend,
                    max_failures=0,
                )
                out.append(
                    {
                        "model": model,
                        "shape": label,
                        "backend": backend,
                        "wall_s": time.perf_counter() - t0,
                        **{
                            k: row.get(k)
                            for k in (
                                "step",
                                "tokens_per_s",
                                "model_flops_per_s",
                                "mfu",
                                "compile_s",
                                "gpu_mem_peak_gib",
                                "val_loss",
                                "diverged",
                            )
                        },
                    }
                )
                print(_ray_line(out[-1]), flush=True)
    finally:
        ray.shutdown()
        stop_local_cluster(cluster)
    return out


# ------------------------------------------------------------------------------------------ output


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _engine_line(r: dict[str, Any]) -> str:
    return (
        f"engine {r['model']:>8}: {_fmt(r['tokens_per_s'])} tokens/s · MFU {_fmt(r['mfu'], '.1%')}"
        f" ({r['peak_device'] or 'no peak for this device'}) · peak {_fmt(r['gpu_mem_peak_gib'], '.1f')} GiB"
        f" (estimate {r['gpu_mem_estimate_gib']:.1f}) · compile {_fmt(r['compile_s'], '.1f')} s"
        f" · flash attention {'yes' if r['flash_attention'] else 'NO'}"
    )


def _ray_line(r: dict[str, Any]) -> str:
    return (
        f"ray {r['model']:>8} {r['shape']} ({r['backend']}): {_fmt(r['tokens_per_s'])} tokens/s"
        f" · MFU {_fmt(r['mfu'], '.1%')} · peak {_fmt(r['gpu_mem_peak_gib'], '.1f')} GiB"
        f" · compile {_fmt(r['compile_s'], '.1f')} s · wall {r['wall_s']:.0f} s"
    )


def _ratio_lines(ratios: dict[str, Any]) -> list[str]:
    lines = [f"loss variants on {ratios['model']}, T={ratios['seq_len']}, B={ratios['batch_size']}:"]
    for name, v in ratios["variants"].items():
        target = v["target"]
        met = target is not None and v["ratio_best"] <= target
        verdict = "" if target is None else f" (target <= {target:.2f}x: {'met' if met else 'NOT met'})"
        lines.append(
            f"  {name:>12}: best {v['best_step_ms']:.2f} ms, median {v['median_step_ms']:.2f} ms,"
            f" {v['ratio_best']:.3f}x best / {v['ratio_median']:.3f}x median{verdict}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["oec-16m", "oec-57m"])
    parser.add_argument("--steps", type=int, default=300, help="steps of each throughput run")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (sequences per step)")
    parser.add_argument("--ratio-model", default="oec-57m")
    parser.add_argument("--ratio-rounds", type=int, default=10)
    parser.add_argument("--ratio-steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--ratio-warmup", type=int, default=5, help="untimed steps per variant (compilation)")
    parser.add_argument("--corpus-tokens", type=int, default=4_000_000, help="size of the synthetic corpus")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-ratios", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)

    refusal = cuda_refusal()
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    import torch

    device = torch.device("cuda", torch.cuda.current_device())
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    summary: dict[str, Any] = {
        "machine": {
            "gpu": torch.cuda.get_device_name(),
            "gpus": torch.cuda.device_count(),
            "gpu_memory_gib": _gib(torch.cuda.get_device_properties(0).total_memory),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "nccl": ".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    print(json.dumps(summary["machine"]), flush=True)
    try:
        corpus = synthetic_corpus(work / "data", tokens=args.corpus_tokens)
        summary["engine"] = []
        for model in args.models:
            summary["engine"].append(engine_throughput(args, corpus, model, device))
            print(_engine_line(summary["engine"][-1]), flush=True)
        if not args.skip_ratios:
            summary["ratios"] = variant_ratios(args, corpus, device)
            print("\n".join(_ratio_lines(summary["ratios"])), flush=True)
        if not args.skip_ray:
            summary["ray"] = ray_runs(args, corpus, work)
    finally:
        summary["wall_s"] = time.perf_counter() - started
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2, default=str))
        shutil.rmtree(work, ignore_errors=True)
    mfu = next((r["mfu"] for r in summary["engine"] if r["model"] == "oec-57m" and r["mfu"] is not None), None)
    if mfu is not None:
        print(f"oec-57m bf16 MFU {mfu:.1%} (target >= {MFU_TARGET:.0%}: {'met' if mfu >= MFU_TARGET else 'NOT met'})")
    print(f"gpu_check done in {summary['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
