"""The statistics every comparison lossweep prints is made of, on scipy.stats: t-intervals over seeds,
paired differences with their verdict, stratified bootstrap intervals, and the power of a paired design
(the smallest difference a sweep resolves, and the seeds a difference would need).

Pure and torch-free: the analysis, the reports, the CLI and the service all read these numbers from here.
Differences are ``method − baseline`` of a loss, so a negative difference means the method is better.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

#: Two-sided level of every interval and test.
CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
#: The power at which the minimum detectable effect and the seeds needed are stated.
POWER = 0.80
#: Bootstrap resamples (percentile intervals; fixed seed, so a report renders the same twice).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: The most seeds :func:`seeds_needed` looks for before it says "more than this".
MAX_SEEDS = 10_000

BETTER = "better"
WORSE = "worse"
NOT_RESOLVED = "not resolved"
NOT_RESOLVED_N1 = "not resolved (n = 1)"
#: Seed pairs per cell below which a percentile bootstrap interval is too narrow to give a verdict: its
#: coverage falls short of the nominal 95 % at small n (benchmarks/bench_bootstrap_coverage.py, BENCHMARKS.md).
BOOTSTRAP_MIN_N = 10
NOT_RESOLVED_FEW = f"not resolved (n < {BOOTSTRAP_MIN_N} for a bootstrap)"
#: Every verdict a comparison can carry.
VERDICTS: tuple[str, ...] = (BETTER, WORSE, NOT_RESOLVED, NOT_RESOLVED_N1, NOT_RESOLVED_FEW)

VERDICT_RULE = (
    f"paired difference method - baseline on the same seed; {BETTER} when its {CONFIDENCE:.0%} t-interval lies "
    f"below 0, {WORSE} when above 0, {NOT_RESOLVED} when it contains 0; one pair is always {NOT_RESOLVED_N1!r}"
)
MDE_RULE = (
    f"minimum detectable effect: the smallest true paired difference a two-sided paired t-test at alpha = "
    f"{ALPHA:.2f} detects with {POWER:.0%} power at the observed SD and n (noncentral t); seeds needed: the "
    f"smallest n at which the observed difference would be detected with {POWER:.0%} power"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Interval:
    """n, mean, sample SD and the two-sided t-interval of the mean (None where n is too small)."""

    n: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Comparison(Interval):
    """A paired difference: its interval, paired-t p, verdict and power (:data:`VERDICT_RULE`, :data:`MDE_RULE`)."""

    p: float | None
    verdict: str
    mde: float | None
    seeds_needed: int | None


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean and t-interval over the finite ``values`` (one per seed); low/high None for n < 2."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(n=0, mean=None, sd=None, low=None, high=None)
    mean = float(np.mean(x))
    if n < 2:
        return Interval(n=1, mean=mean, sd=None, low=None, high=None)
    sd = float(np.std(x, ddof=1))
    if sd == 0.0:
        return Interval(n=n, mean=mean, sd=0.0, low=mean, high=mean)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(n=n, mean=mean, sd=sd, low=mean - half, high=mean + half)


def bootstrap_verdict(low: float | None, high: float | None, n: int) -> str:
    """:func:`verdict` for a percentile bootstrap interval over ``n`` seed pairs per cell: below
    :data:`BOOTSTRAP_MIN_N` the interval is shown but gives no verdict (:data:`NOT_RESOLVED_FEW`)."""
    if n < BOOTSTRAP_MIN_N:
        return NOT_RESOLVED_N1 if n == 1 else NOT_RESOLVED_FEW
    return verdict(low, high, n)


def verdict(low: float | None, high: float | None, n: int) -> str:
    """:data:`VERDICT_RULE` for a difference's interval."""
    if n < 2 or low is None or high is None:
        return NOT_RESOLVED_N1 if n == 1 else NOT_RESOLVED
    if high < 0:
        return BETTER
    if low > 0:
        return WORSE
    return NOT_RESOLVED


def paired_difference(method: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """``method − baseline`` paired element by element (same seed): interval, p, verdict and power."""
    m, b = np.asarray(method, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if m.shape != b.shape:
        raise ValueError(f"paired samples need the same length, got {len(m)} and {len(b)}")
    keep = np.isfinite(m) & np.isfinite(b)
    diff = m[keep] - b[keep]
    interval = t_interval(diff)
    p: float | None = None
    if interval.n >= 2 and interval.sd is not None and interval.mean is not None:
        if interval.sd == 0.0:
            p = 1.0 if interval.mean == 0.0 else 0.0
        else:  # the paired t-test's two-sided p (scipy.stats.ttest_rel's, without its per-call overhead)
            statistic = interval.mean / (interval.sd / math.sqrt(interval.n))
            p = float(2 * sps.t.sf(abs(statistic), interval.n - 1))
    mde = minimum_detectable_effect(interval.sd, interval.n)
    needed = None
    if interval.mean is not None and interval.sd is not None:
        needed = seeds_needed(interval.mean, interval.sd)
    judged = verdict(interval.low, interval.high, interval.n)
    return Comparison(**interval.to_dict(), p=p, verdict=judged, mde=mde, seeds_needed=needed)


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs against a true mean difference ``effect``."""
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df = n - 1
    critical = sps.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * math.sqrt(n) / sd
    exact = float(sps.nct.sf(critical, df, nc) + sps.nct.cdf(-critical, df, nc))
    if math.isfinite(exact):
        return exact
    # scipy's noncentral t fails far in the tail (large nc and df), where the normal limit is exact enough.
    return float(sps.norm.sf(critical - nc) + sps.norm.cdf(-critical - nc))


@functools.lru_cache(maxsize=4096)
def _unit_mde(n: int, target: float, alpha: float) -> float:
    """The minimum detectable effect at SD 1 (it scales with the SD), cached: the noncentral t is slow."""
    upper = 1.0
    while power(upper, 1.0, n, alpha) < target:
        upper *= 2
    return float(optimize.brentq(lambda d: power(d, 1.0, n, alpha) - target, 0.0, upper, xtol=1e-10))


def minimum_detectable_effect(sd: float | None, n: int, target: float = POWER, alpha: float = ALPHA) -> float | None:
    """The smallest |difference| detected with power ``target`` at SD ``sd`` and ``n`` pairs (None for n < 2)."""
    if sd is None or n < 2 or not math.isfinite(sd):
        return None
    return sd * _unit_mde(n, target, alpha)


def seeds_needed(effect: float, sd: float, target: float = POWER, alpha: float = ALPHA) -> int | None:
    """Smallest n ≥ 2 at which a true difference ``effect`` is detected with power ``target``;
    None when none up to :data:`MAX_SEEDS` does (an effect of 0 never is)."""
    if effect == 0 or not math.isfinite(effect) or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    ratio = abs(effect) / sd
    # Start from the normal approximation n = ((z_{1-α/2} + z_power) / ratio)²; the t-test needs a few more.
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(target))
    approx = (z / ratio) ** 2
    if approx > MAX_SEEDS:
        return None
    n = max(2, math.floor(approx))
    while n > 2 and power(effect, sd, n - 1, alpha) >= target:
        n -= 1
    while power(effect, sd, n, alpha) < target:
        n += 1
        if n > MAX_SEEDS:
            return None
    return n


def stratified_bootstrap(
    strata: Sequence[int],
    statistic: Callable[[Sequence[np.ndarray]], np.ndarray],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic`` when the units of each stratum (the seeds of one
    learning-rate cell) are resampled with replacement within their stratum (``scipy.stats.bootstrap``).

    ``strata`` gives the number of units per stratum. ``statistic`` receives one integer index array per
    stratum, shaped ``(B, units)`` (B resamples at once: which units each drew), and returns B values, so
    paired data (a method and the baseline on the same seed) stay paired. None when no stratum has two
    units to resample.
    """
    sizes = [int(s) for s in strata]
    if not sizes or min(sizes) < 1 or max(sizes) < 2:
        return None
    # A stratum with one unit has nothing to resample: it stays fixed (scipy needs two per sample).
    varying = [i for i, s in enumerate(sizes) if s >= 2]

    def on_indices(*drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = drawn[0].shape[:-1]
        indices = [np.broadcast_to(np.arange(s), (*batch, s)) for s in sizes]
        for position, d in zip(varying, drawn, strict=True):
            indices[position] = d.astype(np.int64)
        flat = [i.reshape(-1, i.shape[-1]) for i in indices]
        return np.asarray(statistic(flat), dtype=np.float64).reshape(batch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate (constant) statistic: the interval is that point
        result = sps.bootstrap(
            tuple(np.arange(sizes[i], dtype=np.float64) for i in varying),
            on_indices,
            vectorized=True,
            paired=False,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        value = float(np.asarray(statistic([np.arange(s)[None, :] for s in sizes])).reshape(-1)[0])
        return value, value
    return low, high


def lr_sensitivity_rows(losses: np.ndarray, l0: float) -> np.ndarray:
    """LRS of each row of ``losses`` (shape ``(B, K)``: B families or resamples, K learning rates):
    ``1/(K−1) · Σ_k [min(L_k, L0) − min_k min(L_k, L0)]``, non-finite losses counting as ``L0``."""
    capped = np.where(np.isfinite(losses), np.minimum(losses, l0), l0)
    return (capped - capped.min(axis=1, keepdims=True)).sum(axis=1) / (capped.shape[1] - 1)


def describe(comparison: Comparison, unit: str = "nats") -> str:
    """One line: ``−0.031 [−0.052, −0.010] nats, n = 5, p = 0.012: better; resolves ≥ 0.021``."""
    if comparison.mean is None:
        return "no pairs"
    text = f"{comparison.mean:+.4f}"
    if comparison.low is not None and comparison.high is not None:
        text += f" [{comparison.low:+.4f}, {comparison.high:+.4f}]"
    text += f" {unit}, n = {comparison.n}"
    if comparison.p is not None:
        text += f", p = {comparison.p:.3g}"
    text += f": {comparison.verdict}"
    if comparison.mde is not None:
        text += f"; resolves differences >= {comparison.mde:.3g} {unit}"
    return text
