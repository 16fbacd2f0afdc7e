"""A run's start-up and end, as wall-clock marks.

Marks are ``time.time()`` values, so marks taken by different processes of one machine compare (across
machines, as well as their clocks agree). In the order a run passes them:

- ``fit_called``: the driver calls ``trainables.train.trainer.fit``;
- ``worker_process_started``: rank 0's process was created (Linux; a process Ray started ahead of
  time may predate ``fit_called``);
- ``loop_entered``: rank 0 enters the train loop: its Ray Train worker is up, torch imported and the
  process group formed;
- ``data_ready``: the corpus is loaded; ``model_ready``: model and optimizer built, checkpoint loaded;
- ``first_step``: the first optimizer step is done;
- ``last_report``: rank 0 has handed its last report to Ray Train;
- ``fit_returned``: ``fit`` returns to the driver (workers and placement group released).

``fit`` writes them, with the two durations below, into the run's manifest (``startup``) and returns
them under ``STARTUP_KEY``; ``benchmarks/bench_ray_train.py`` breaks a trial's overhead down with them.

``LOSSWEEP_LEAN_TRIALS=0`` turns off what lossweep does to shorten them (docs/ray-knobs.md): runs
then get Ray Train's dataset manager, and sweeps a fresh trial actor per trial.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

MARKS: tuple[str, ...] = (
    "fit_called",
    "worker_process_started",
    "loop_entered",
    "data_ready",
    "model_ready",
    "first_step",
    "last_report",
    "fit_returned",
)
#: Key of the marks in ``fit``'s result and in a run's manifest.
STARTUP_KEY = "startup"
LEAN_TRIALS_ENV = "LOSSWEEP_LEAN_TRIALS"


def lean_trials() -> bool:
    """Whether runs and sweeps trim Ray's per-trial start-up (on unless ``LOSSWEEP_LEAN_TRIALS=0``)."""
    return os.environ.get(LEAN_TRIALS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def process_started() -> float | None:
    """When this process was created (wall clock, to ~10 ms), from ``/proc``; None where there is no
    ``/proc``."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            # Field 22 (starttime) counts clock ticks since boot; the command name (field 2) may hold
            # spaces, so count from its closing parenthesis.
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def durations(marks: Mapping[str, float]) -> dict[str, float]:
    """``startup_s`` (fit called → first step done) and ``end_s`` (last report → fit returned), for
    the marks present."""
    out: dict[str, float] = {}
    if "fit_called" in marks and "first_step" in marks:
        out["startup_s"] = marks["first_step"] - marks["fit_called"]
    if "last_report" in marks and "fit_returned" in marks:
        out["end_s"] = marks["fit_returned"] - marks["last_report"]
    return out
