"""One readable line per report, for the Ray dashboard's log viewer (and ``ray logs``).

A trial's rank 0 prints it to its worker's stdout, which Ray writes to the worker's log file; the
dashboard shows those files per actor and per job. Fixed field order, units in the numbers, no
colour codes, so the lines line up in a plain text viewer and grep well::

    [lossweep demo-a1b2c3d4] step 150/400 tokens 76.8k val_ce 3.4121 train_ce 3.5012 lr 2.84e-03 3.1k tok/s diverged no
    [lossweep demo-b7e0c912] step 60/400 tokens 30.7k val_ce 5.5452 train_ce - lr 9.00e-02 - tok/s
        diverged at step 60 (nonfinite_loss)      <- one line in the log; wrapped here

(a diverged run's last row carries the finite sentinel as ``val_ce``; values that were not finite
were dropped by the all-reduce and show as ``-``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, TextIO

PREFIX = "lossweep"


def _si(value: float) -> str:
    """``76800`` -> ``76.8k``: short counts that stay readable at a glance."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def _num(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def _fixed(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, fmt)


def progress_line(row: Mapping[str, Any], *, run: str | None = None, total_steps: int | None = None) -> str:
    """The line for one report ``row`` (keys of ``docs/sweep-dir.md``: ``step``, ``tokens``,
    ``val_loss``, ``train_loss``, ``lr``, ``tokens_per_s``, ``diverged``...). Missing values show as
    ``-``; ``run`` names the trial (``<sweep>-<trial>``)."""
    step = _num(row, "step")
    step_text = "-" if step is None else f"{step:.0f}"
    if total_steps is not None:
        step_text += f"/{total_steps}"
    tokens = _num(row, "tokens")
    tps = _num(row, "tokens_per_s")
    parts = [
        f"[{PREFIX} {run}]" if run else f"[{PREFIX}]",
        f"step {step_text}",
        f"tokens {'-' if tokens is None else _si(tokens)}",
        f"val_ce {_fixed(_num(row, 'val_loss'), '.4f')}",
        f"train_ce {_fixed(_num(row, 'train_loss'), '.4f')}",
        f"lr {_fixed(_num(row, 'lr'), '.2e')}",
        f"{'-' if tps is None or not math.isfinite(tps) else _si(tps)} tok/s",
        f"diverged {_diverged(row)}",
    ]
    return " ".join(parts)


def _diverged(row: Mapping[str, Any]) -> str:
    if not _num(row, "diverged"):
        return "no"
    at = _num(row, "diverged_step")
    cause = row.get("diverged_cause")
    text = "at step " + (f"{at:.0f}" if at is not None and at >= 0 else "?")
    return f"{text} ({cause})" if cause else text


def log_progress(
    row: Mapping[str, Any],
    *,
    run: str | None = None,
    total_steps: int | None = None,
    stream: TextIO | None = None,
) -> str:
    """Writes ``progress_line(row)`` to ``stream`` (stdout by default) and flushes, so the line is in
    the worker's log file when the dashboard reads it. Returns the line."""
    line = progress_line(row, run=run, total_steps=total_steps)
    out = stream if stream is not None else sys.stdout
    out.write(line + "\n")
    out.flush()
    return line
