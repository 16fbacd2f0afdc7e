"""How often the LRS-difference interval covers the true difference, by seed pairs per cell.

Synthetic paired experiments with a known truth: three learning-rate cells, a method and the baseline
on the same seeds (a shared per-seed effect, SD 0.05, plus independent noise, SD 0.03, per run), true
losses (2.0, 2.2, 2.6) and (2.0, 2.25, 2.75). For each n, ``--draws`` experiments are analysed with the
statistics module's own stratified percentile bootstrap (``search_spaces.analysis.stats``), the one
``lrs_differences`` uses; the printed coverage is the share of intervals that contain the true ΔLRS.
A 95 % interval should cover 95 %: ``stats.BOOTSTRAP_MIN_N`` is where it comes close enough to give
verdicts.

    .venv/bin/python benchmarks/bench_bootstrap_coverage.py --draws 300 --n 3 5 10
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from search_spaces.analysis import stats

L0 = 5.5
TRUE_METHOD = np.array([2.0, 2.2, 2.6])
TRUE_BASELINE = np.array([2.0, 2.25, 2.75])


def _lrs(losses: np.ndarray) -> np.ndarray:
    return stats.lr_sensitivity_rows(losses, L0)


def coverage(n: int, draws: int, rng: np.random.Generator, resamples: int) -> float:
    truth = float(_lrs(TRUE_METHOD[None])[0] - _lrs(TRUE_BASELINE[None])[0])
    covered = 0
    for _ in range(draws):
        seed_effect = rng.normal(0.0, 0.05, size=(3, n))
        method = TRUE_METHOD[:, None] + seed_effect + rng.normal(0.0, 0.03, size=(3, n))
        baseline = TRUE_BASELINE[:, None] + seed_effect + rng.normal(0.0, 0.03, size=(3, n))
        cells = [np.stack([method[k], baseline[k]], axis=1) for k in range(3)]

        def delta(drawn: Sequence[np.ndarray], cells: list[np.ndarray] = cells) -> np.ndarray:
            means = np.stack([c[i].mean(axis=1) for c, i in zip(cells, drawn, strict=True)], axis=1)
            return _lrs(means[..., 0]) - _lrs(means[..., 1])

        interval = stats.stratified_bootstrap([n] * 3, delta, n_resamples=resamples)
        assert interval is not None
        covered += interval[0] <= truth <= interval[1]
    return covered / draws


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300, help="synthetic experiments per n")
    parser.add_argument("--n", type=int, nargs="+", default=[3, 5, 10], help="seed pairs per cell")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out = {}
    for n in args.n:
        out[n] = coverage(n, args.draws, rng, args.resamples)
        print(f"n = {n:>3} seed pairs per cell: coverage {out[n]:.1%} of {args.draws} (nominal 95%)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"draws": args.draws, "resamples": args.resamples, "coverage": out}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
