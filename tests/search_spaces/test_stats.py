"""The statistics module against scipy, hand-computed values and slow obvious references; the coverage
of its intervals and the honesty of its verdicts on synthetic trial tables with a known true difference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from search_spaces.analysis import stats
from search_spaces.analysis.sensitivity import lr_sensitivity, lrs_differences, paired_deltas
from search_spaces.analysis.trial_frame import lr_sensitivity_value, measured_loss
from tests.search_spaces.synthetic_sweep import trial


def test_t_interval_hand_computed() -> None:
    # n = 4, mean 2.5, s = sqrt(5/3), t_{0.975,3} = 3.182446305
    got = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    s = math.sqrt(5 / 3)
    half = 3.182446305284263 * s / 2
    assert got.n == 4 and got.mean == 2.5 and got.sd == pytest.approx(s, rel=1e-12)
    assert (got.low, got.high) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-9)


def test_t_interval_small_and_degenerate() -> None:
    assert stats.t_interval([]).n == 0
    one = stats.t_interval([3.0, float("nan")])
    assert (one.n, one.mean, one.low, one.high) == (1, 3.0, None, None)
    flat = stats.t_interval([2.0, 2.0, 2.0])
    assert (flat.sd, flat.low, flat.high) == (0.0, 2.0, 2.0)


@pytest.mark.parametrize("seed", range(5))
def test_paired_difference_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    base = rng.normal(3.0, 0.3, n)
    method = base + rng.normal(-0.05, 0.1, n)
    got = stats.paired_difference(method.tolist(), base.tolist())
    diff = method - base
    ref = sps.ttest_rel(method, base)
    ci = ref.confidence_interval(0.95)
    assert got.n == n
    assert got.mean == pytest.approx(float(np.mean(diff)), rel=1e-12)
    assert got.sd == pytest.approx(float(np.std(diff, ddof=1)), rel=1e-12)
    assert got.p == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert (got.low, got.high) == pytest.approx((float(ci.low), float(ci.high)), rel=1e-9)
    expected = "better" if ci.high < 0 else "worse" if ci.low > 0 else "not resolved"
    assert got.verdict == expected


def test_verdicts() -> None:
    assert stats.paired_difference([1.0], [2.0]).verdict == stats.NOT_RESOLVED_N1
    assert stats.paired_difference([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]).verdict == stats.BETTER
    assert stats.paired_difference([2.0, 2.1, 1.9], [1.0, 1.1, 0.9]).verdict == stats.WORSE
    assert stats.paired_difference([1.0, 1.2], [1.1, 1.1]).verdict == stats.NOT_RESOLVED
    # Pairs whose one side is missing (NaN) are left out, not counted as a pair.
    assert stats.paired_difference([1.0, float("nan")], [2.0, 2.0]).n == 1
    with pytest.raises(ValueError, match="same length"):
        stats.paired_difference([1.0, 2.0], [1.0])


def _simulated_power(effect: float, sd: float, n: int, draws: int, rng: np.random.Generator) -> float:
    diffs = rng.normal(effect, sd, size=(draws, n))
    t = diffs.mean(axis=1) / (diffs.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > sps.t.ppf(0.975, n - 1)))


def test_power_and_mde_against_simulation() -> None:
    rng = np.random.default_rng(7)
    assert stats.power(0.1, 0.1, 10) == pytest.approx(_simulated_power(0.1, 0.1, 10, 40_000, rng), abs=0.01)
    mde = stats.minimum_detectable_effect(0.1, 5)
    assert stats.power(mde, 0.1, 5) == pytest.approx(0.8, abs=1e-9)
    assert _simulated_power(mde, 0.1, 5, 40_000, rng) == pytest.approx(0.8, abs=0.01)
    # Scale: the MDE is proportional to the SD; it shrinks with n.
    assert stats.minimum_detectable_effect(0.2, 5) == pytest.approx(2 * mde, rel=1e-6)
    assert stats.minimum_detectable_effect(0.1, 20) < mde
    assert stats.minimum_detectable_effect(0.1, 1) is None
    # Hand check with the normal approximation for large n: (z_.975 + z_.8) * sd / sqrt(n).
    assert stats.minimum_detectable_effect(1.0, 400) == pytest.approx((1.959964 + 0.841621) / 20, rel=5e-3)


def test_seeds_needed() -> None:
    n = stats.seeds_needed(0.05, 0.1)
    assert n is not None and stats.power(0.05, 0.1, n) >= 0.8 > stats.power(0.05, 0.1, n - 1)
    assert stats.seeds_needed(0.0, 0.1) is None
    assert stats.seeds_needed(1e-6, 0.27) is None  # more than MAX_SEEDS
    assert stats.seeds_needed(1.0, 0.01) == 2


def test_stratified_bootstrap_against_slow_reference() -> None:
    rng = np.random.default_rng(3)
    cells = [rng.normal(2.0 + k * 0.1, 0.05, size=4) for k in range(3)] + [np.array([2.4])]
    l0 = math.log(256)

    def lrs(drawn: list[np.ndarray]) -> np.ndarray:
        means = np.stack([c[i].mean(axis=1) for c, i in zip(cells, drawn, strict=True)], axis=1)
        return stats.lr_sensitivity_rows(means, l0)

    low, high = stats.stratified_bootstrap([len(c) for c in cells], lrs, n_resamples=4000)
    # Slow reference: resample each cell with replacement in a Python loop, percentile interval.
    ref_rng = np.random.default_rng(11)
    values = [
        lr_sensitivity_value([float(np.mean(ref_rng.choice(c, size=len(c)))) for c in cells], l0)
        for _ in range(4000)
    ]
    ref_low, ref_high = np.percentile(values, [2.5, 97.5])
    assert low == pytest.approx(ref_low, abs=0.01) and high == pytest.approx(ref_high, abs=0.01)
    point = lr_sensitivity_value([float(np.mean(c)) for c in cells], l0)
    assert low < point < high
    assert stats.stratified_bootstrap([1, 1], lrs) is None


def test_lr_sensitivity_rows_matches_scalar() -> None:
    rng = np.random.default_rng(5)
    losses = rng.uniform(2, 7, size=(20, 5))
    losses[0, 2] = np.nan
    got = stats.lr_sensitivity_rows(losses, 5.5)
    assert got == pytest.approx([lr_sensitivity_value(list(row), 5.5) for row in losses], rel=1e-12)


def test_measured_loss_prefers_test_ce() -> None:
    assert measured_loss({"final_val_loss": 2.0, "test_ce": 1.9}) == 1.9
    assert measured_loss({"final_val_loss": 2.0, "test_ce": None}) == 2.0
    assert measured_loss({"final_val_loss": 2.0, "test_ce": float("nan")}) == 2.0
    assert measured_loss({"final_val_loss": 2.0}) == 2.0


def _paired_table(rng: np.random.Generator, true_delta: float, draws: int, n: int, sd: float) -> pd.DataFrame:
    """``draws`` independent paired experiments in one trial table, one learning rate each: the baseline and
    the method on ``n`` seeds, the method's measured (test) loss ``true_delta`` away on average."""
    rows = []
    for draw in range(draws):
        lr = 1e-4 * (1 + draw)
        for seed in range(n):
            base = 2.0 + rng.normal(0, 0.2)  # seed effect shared by both: the pairing removes it
            delta = true_delta + rng.normal(0, sd)
            rows.append(trial(f"b{draw}-{seed}", "baseline", lr, base + 0.5, seed=seed) | {"test_ce": base})
            rows.append(
                trial(f"m{draw}-{seed}", "mu_centering", lr, base + 0.5, seed=seed) | {"test_ce": base + delta}
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("true_delta", [-0.03, 0.0])
def test_coverage_on_synthetic_trial_tables(true_delta: float) -> None:
    """2000 synthetic paired experiments (fixed RNG): the 95% interval of the paired delta covers the true
    difference in 93-97% of them; with no true difference the verdict is 'not resolved' in >= 93%."""
    draws = 2000
    deltas = paired_deltas(_paired_table(np.random.default_rng(2026), true_delta, draws, n=5, sd=0.05))
    assert len(deltas) == draws and set(deltas["n_pairs"]) == {5}
    covered = ((deltas["delta_low"] <= true_delta) & (true_delta <= deltas["delta_high"])).mean()
    assert 0.93 <= covered <= 0.97
    if true_delta == 0.0:
        assert (deltas["verdict"] == stats.NOT_RESOLVED).mean() >= 0.93


def test_tables_carry_intervals() -> None:
    rows = []
    for seed in range(3):
        for lr in (1e-3, 1e-2, 1e-1):
            rows.append(trial(f"b{lr}-{seed}", "baseline", lr, 3.0 + 0.01 * seed + (lr == 1e-1), seed=seed))
            rows.append(trial(f"m{lr}-{seed}", "mu_centering", lr, 3.0 - 0.02 + 0.012 * seed, seed=seed))
    table = pd.DataFrame(rows)
    lrs = lr_sensitivity(table).set_index("method")
    assert lrs.loc["baseline", "lrs_low"] <= lrs.loc["baseline", "lrs"] <= lrs.loc["baseline", "lrs_high"]
    cell = lrs.loc["baseline", "cells"][0]
    assert cell["n"] == 3 and cell["low"] < cell["mean"] < cell["high"]
    deltas = paired_deltas(table)
    assert set(deltas["verdict"]) == {"better"}
    assert deltas["mde"].notna().all()
    diff = lrs_differences(table).iloc[0]
    assert diff["lrs_delta"] == pytest.approx(lrs.loc["mu_centering", "lrs"] - lrs.loc["baseline", "lrs"])
    # three seed pairs: the bootstrap interval is shown, but too narrow at that n to give a verdict
    assert diff["lrs_delta_high"] < 0 and diff["verdict"] == stats.NOT_RESOLVED_FEW


def test_an_lrs_difference_over_enough_seed_pairs_gets_its_verdict() -> None:
    rows = []
    for seed in range(stats.BOOTSTRAP_MIN_N):
        for lr in (1e-3, 1e-2, 1e-1):
            rows.append(trial(f"b{lr}-{seed}", "baseline", lr, 3.0 + 0.01 * seed + (lr == 1e-1), seed=seed))
            rows.append(trial(f"m{lr}-{seed}", "mu_centering", lr, 3.0 - 0.02 + 0.012 * seed, seed=seed))
    diff = lrs_differences(pd.DataFrame(rows)).iloc[0]
    assert diff["n_pairs"] == stats.BOOTSTRAP_MIN_N and diff["verdict"] == stats.BETTER
    assert stats.bootstrap_verdict(-0.2, -0.1, 1) == stats.NOT_RESOLVED_N1
