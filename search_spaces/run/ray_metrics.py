"""Sweep-level series exported through Ray's metrics pipeline: trials per status, best so far.

The sweep driver calls ``export_progress(progress)`` with the same dict it writes to
``progress.json`` (``docs/sweep-dir.md``), on every trial report. Every status of
``TRIAL_STATUSES`` is set each time (zeros included), so a status that empties drops to 0 in
Prometheus instead of keeping its last count. Outside a Ray-connected process it does nothing;
``ray`` is only touched through ``trainables.train.ray_metrics``, which never imports it unasked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from search_spaces.run.sweep_dir import TRIAL_STATUSES
from trainables.train.ray_metrics import MetricSpec, finite_number, instrument, ray_initialized

log = logging.getLogger("lossweep.ray_metrics")

#: Trial statuses of a sweep (``docs/sweep-dir.md``).

SWEEP_TRIALS = MetricSpec("lossweep_sweep_trials", "gauge", "Trials of the sweep per status.", ("sweep", "status"))
SWEEP_BEST_VAL_LOSS = MetricSpec(
    "lossweep_sweep_best_val_loss",
    "gauge",
    "Lowest validation CE of the sweep so far (diverged trials excluded).",
    ("sweep",),
)
SWEEP_TOKENS = MetricSpec("lossweep_sweep_tokens", "gauge", "Tokens trained on by all trials of the sweep.", ("sweep",))

SWEEP_METRICS: tuple[MetricSpec, ...] = (SWEEP_TRIALS, SWEEP_BEST_VAL_LOSS, SWEEP_TOKENS)

_failed = False


def export_trial_counts(sweep_id: str, counts: Mapping[str, int]) -> None:
    """Sets ``lossweep_sweep_trials{sweep, status}`` for every status (missing ones are 0); statuses
    outside ``TRIAL_STATUSES`` are exported too, under their own name."""
    export_progress({"sweep_id": sweep_id, "counts": dict(counts)})


def export_progress(progress: Mapping[str, Any], *, sweep_id: str | None = None) -> None:
    """Exports a ``progress.json`` dict: trial counts per status, the best validation CE so far and the
    sweep's tokens. ``sweep_id`` defaults to ``progress["sweep_id"]``."""
    global _failed
    if _failed or not ray_initialized():
        return
    sweep = str(sweep_id or progress.get("sweep_id") or "")
    if not sweep:
        raise ValueError("export_progress: progress has no 'sweep_id' and none was given")
    raw = progress.get("counts") or {}
    counts = {status: 0.0 for status in TRIAL_STATUSES}
    if isinstance(raw, Mapping):
        for status, value in raw.items():
            number = finite_number(value)
            if number is not None:
                counts[str(status)] = number
    try:
        gauge = instrument(SWEEP_TRIALS)
        for status, value in counts.items():
            gauge.set(value, tags={"sweep": sweep, "status": status})
        best = progress.get("best")
        if isinstance(best, Mapping):
            value = finite_number(best.get("val_loss"))
            if value is not None:
                # Per-method bests come from the trial series; a method tag here would leave a stale
                # series behind whenever the best trial's method changes.
                instrument(SWEEP_BEST_VAL_LOSS).set(value, tags={"sweep": sweep})
        tokens = finite_number(progress.get("tokens"))
        if tokens is not None:
            instrument(SWEEP_TOKENS).set(tokens, tags={"sweep": sweep})
    except Exception as exc:  # monitoring never fails a sweep
        _failed = True
        log.warning("exporting sweep metrics to Ray failed; not trying again in this driver: %s", exc)


__all__ = [
    "SWEEP_BEST_VAL_LOSS",
    "SWEEP_METRICS",
    "SWEEP_TOKENS",
    "SWEEP_TRIALS",
    "TRIAL_STATUSES",
    "export_progress",
    "export_trial_counts",
]
