"""Step cost of each loss variant, and our trainer against a Hugging Face GPT-2 of the same size.

Measures the wall time of one optimizer step of ``TrainingRun`` (forward, loss, backward, clip,
AdamW, μ-centering where enabled, metric reduction) for every loss variant on the same model, data
and batch, and of a plain PyTorch loop around ``transformers.GPT2LMHeadModel`` built from a config
of the same depth, width, heads and vocabulary (no download). Variants are interleaved step by
step with a rotating order; each reports its best (minimum) and median step time, so bursts of load
on a shared machine hit all variants alike and the best-of-N estimate is the least disturbed.

    .venv/bin/python benchmarks/bench_losses.py                       # cpu-small, T=256, fp32
    .venv/bin/python benchmarks/bench_losses.py --rounds 10 --json out.json --no-peer

Needs the ``bench`` extra (``pip install -e .[bench]``) for the peer; ``--no-peer`` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.data.tokens import load_dataset
from trainables.losses.config import LossConfig
from trainables.train.config import DataConfig, OptimConfig, TrainConfig
from trainables.train.engine import TrainingRun

VARIANTS = ("baseline", "mu_loss", "mu_centering", "z_loss", "softcap", "simreg")
TARGETS = {"mu_loss": 1.01, "mu_centering": 1.01, "z_loss": 1.02, "simreg": 1.05}


def our_stepper(method: str, args: argparse.Namespace, dataset: Any) -> tuple[Callable[[], None], int]:
    config = TrainConfig(
        model=args.preset,
        data=DataConfig(corpus=args.data, seq_len=args.seq_len, batch_size=args.batch_size),
        optim=OptimConfig(lr=1e-3, warmup_steps=0),
        loss=LossConfig.from_method(method, {}),
        steps=1_000_000,  # the schedule never ends inside the benchmark
        precision=args.precision,
        compile=args.compile,
        seed=0,
    )
    run = TrainingRun(config, dataset=dataset)

    def step() -> None:
        out = run.train_step()
        if out["diverged"]:
            raise RuntimeError(f"{method} diverged during the benchmark")

    return step, run.module.num_params()


def peer_stepper(args: argparse.Namespace, dataset: Any) -> tuple[Callable[[], None], int]:
    """GPT-2 (learned positions, GELU MLP 4d, biases, tied head) from ``transformers``, same shape."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from trainables.data.sampler import BatchSampler
    from trainables.model.presets import model_preset

    shape = model_preset(args.preset)
    cfg = GPT2Config(
        vocab_size=dataset.vocab_size,
        n_positions=args.seq_len,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=dataset.vocab_size - 1,
        eos_token_id=dataset.vocab_size - 1,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    sampler = BatchSampler(dataset.train, seq_len=args.seq_len, global_batch=args.batch_size, seed=0)
    autocast = args.precision == "bf16"
    state = {"step": 0}

    def step() -> None:
        x, y = sampler.batch(state["step"])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # the same host sync our loop does to report the loss
        state["step"] += 1

    return step, sum(p.numel() for p in model.parameters())


def measure(
    steppers: dict[str, Callable[[], None]], rounds: int, per_round: int, warmup: int
) -> dict[str, list[float]]:
    """Per-step wall times. Each round runs ``per_round`` steps of every variant, the order rotating
    from round to round, so bursts of load from other processes spread over all variants."""
    for step in steppers.values():
        for _ in range(warmup):
            step()
    names = list(steppers)
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for _ in range(per_round):
                t0 = time.perf_counter()
                steppers[name]()
                times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--data", default="stdlib")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps-per-round", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile our model (TrainConfig.compile)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dataset = load_dataset(DataConfig(corpus=args.data, seq_len=args.seq_len, batch_size=args.batch_size))
    steppers: dict[str, Callable[[], None]] = {}
    params: dict[str, int] = {}
    for method in args.variants.split(","):
        steppers[method], params[method] = our_stepper(method, args, dataset)
    if not args.no_peer:
        steppers["hf_gpt2"], params["hf_gpt2"] = peer_stepper(args, dataset)

    times = measure(steppers, args.rounds, args.steps_per_round, args.warmup)
    tokens = args.batch_size * args.seq_len
    # On a shared machine the minimum (best of N) is the least load-dependent estimate of a step's
    # cost; the median is reported beside it.
    base_min, base_med = min(times["baseline"]), statistics.median(times["baseline"])
    rows = []
    for name, ts in times.items():
        rows.append(
            {
                "variant": name,
                "params": params[name],
                "min_step_s": min(ts),
                "median_step_s": statistics.median(ts),
                "tokens_per_s_best": tokens / min(ts),
                "ratio_min": min(ts) / base_min,
                "ratio_median": statistics.median(ts) / base_med,
                "target": TARGETS.get(name),
                "samples": len(ts),
            }
        )
    load = os.getloadavg()
    result = {
        "preset": args.preset,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "compile": args.compile,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_at_end": load,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "rows": rows,
    }
    if "hf_gpt2" in times:
        result["ours_over_peer_best"] = min(times["hf_gpt2"]) / base_min
        result["ours_over_peer_median"] = statistics.median(times["hf_gpt2"]) / base_med
    print(
        f"\n{args.preset}, T={args.seq_len}, B={args.batch_size}, {args.precision}, "
        f"{torch.get_num_threads()} threads, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )
    columns = ["variant", "params", "best step (ms)", "median step (ms)", "best tokens/s"]
    columns += ["vs baseline (best)", "vs baseline (median)", "target"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = f"<= {r['target']:.2f}x" if r["target"] else ""
        cells = [r["variant"], f"{r['params'] / 1e6:.2f}M", f"{r['min_step_s'] * 1e3:.0f}"]
        cells += [f"{r['median_step_s'] * 1e3:.0f}", f"{r['tokens_per_s_best']:,.0f}", f"{r['ratio_min']:.3f}x"]
        cells += [f"{r['ratio_median']:.3f}x", target]
        print("| " + " | ".join(cells) + " |")
    if "ours_over_peer_best" in result:
        print(
            f"\nours (baseline) / HF GPT-2 tokens/s: {result['ours_over_peer_best']:.2f}x best-of-N, "
            f"{result['ours_over_peer_median']:.2f}x median (target >= 1.2x)"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
