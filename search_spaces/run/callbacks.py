"""The Tune callback that keeps a sweep directory's result files current while trials report.

On every report it records the metrics row and updates the trial's row; the three files
(``trials.parquet``, ``metrics.parquet``, ``progress.json``) are rewritten by atomic replacement at most
every ``min_interval_s`` seconds, and at once when a trial starts, ends or fails. Its state is loaded
from the files in ``setup``, so a sweep resumed by ``Tuner.restore`` keeps the rows of trials that
finished before the interruption; the rows of interrupted trials are dropped (they start again).

Statuses: Tune says TERMINATED for every trial that returned; this refines it to ``DIVERGED`` (the
last report has ``diverged=1``) or ``STOPPED`` (ASHA ended it before the budget's last step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ray.tune import Callback

from search_spaces.run import results
from search_spaces.run.ray_metrics import export_progress
from search_spaces.run.results import TEST_COLUMNS
from search_spaces.run.sweep_dir import (
    FINAL_TRIAL_STATUSES,
    SEARCH_STAGE,
    TRIAL_STATUSES,
    SweepStatus,
    TrialStatus,
    best_record,
    best_trial,
    final_trial_status,
    read_tracking,
    stage_of,
    tracking_summary,
)
from search_spaces.run.sweep_dir import finite_float as _finite
from search_spaces.spec.sweep_spec import SIZE_PARAM, SweepSpec
from search_spaces.spec.translate import TrialPlan, trial_params
from trainables.losses.registry import COEFFICIENTS

HEARTBEAT_S = 10.0


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SweepResultsCallback(Callback):
    """``stage`` tags the rows of the trials this Tune run starts (the rows of an earlier stage are kept);
    ``total_trials`` is the sweep's trial count once it is known exactly (the confirm stage's is)."""

    def __init__(
        self,
        sweep_dir: str,
        spec: SweepSpec,
        sweep_id: str,
        *,
        min_interval_s: float = 1.0,
        stage: str = SEARCH_STAGE,
        total_trials: int | None = None,
    ):
        self.sweep_dir = sweep_dir
        self.spec = spec  # validated once, by the job that runs the sweep
        self.sweep_id = sweep_id
        self.min_interval_s = min_interval_s
        self.stage = stage
        self.total_trials = total_trials
        self._reset()

    def _reset(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, list[dict[str, Any]]] = {}
        self.started_at: dict[str, float] = {}
        self.replayed: set[str] = set()
        self.elapsed_before = 0.0
        self.t0 = time.time()
        self.last_flush = 0.0
        self.dirty = False

    # ---------------------------------------------------------------- state
    @property
    def plan(self) -> TrialPlan:
        if not hasattr(self, "_plan"):
            self._plan = TrialPlan.from_spec(self.spec)
        return self._plan

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_spec", None)
        state.pop("_plan", None)
        return state

    def setup(self, **info: Any) -> None:
        self._reset()
        try:
            old = results.read_trials(self.sweep_dir)
        except FileNotFoundError:
            return
        finished = set()
        for rec in old.to_dict("records"):
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
            row["stage"] = stage_of(row)
            if row.get("status") not in FINAL_TRIAL_STATUSES:
                row.update(status=TrialStatus.PENDING, final_val_loss=None, best_val_loss=None, best_step=None,
                           steps=None,
                           tokens=None, wall_time_s=None, diverged_step=None, diverged_cause=None,
                           above_l0_step=None, l0=None, **dict.fromkeys(TEST_COLUMNS))  # fmt: skip
            else:
                finished.add(row["trial_id"])
            self.rows[str(row["trial_id"])] = row
        try:
            old_metrics = results.read_metrics(self.sweep_dir)
            for rec in old_metrics.to_dict("records"):
                if rec["trial_id"] in finished:
                    self.metrics.setdefault(rec["trial_id"], []).append(rec)
        except FileNotFoundError:
            pass
        progress = results.read_progress(self.sweep_dir) or {}
        self.elapsed_before = float(progress.get("elapsed_s") or 0.0)

    def _row(self, trial: Any) -> dict[str, Any]:
        tid = str(trial.trial_id)
        row = self.rows.get(tid)
        if row is None:
            params = trial_params(trial.config)
            row = {"trial_id": tid, "status": TrialStatus.PENDING, "method": params.get("method", self.spec.methods[0]),
                   "stage": self.stage}  # fmt: skip
            if SIZE_PARAM in params:  # a column only where the size is an axis of the sweep
                row[SIZE_PARAM] = params[SIZE_PARAM]
            row["lr"] = params.get("lr")
            for name in COEFFICIENTS:
                row[name] = params.get(name)
            row["seed"] = params.get("seed")
            try:
                row["config_hash"] = self.plan.config(params).config_hash()
            except Exception:  # a config the trainer refuses shows up as the trial's error instead
                row["config_hash"] = None
            self.rows[tid] = row
            self.dirty = True
        return row

    # ---------------------------------------------------------------- hooks
    def on_step(self, iteration: int, trials: list[Any], **info: Any) -> None:
        for trial in trials:
            self._row(trial)
        self.flush()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self._row(trial)
        if row["status"] in FINAL_TRIAL_STATUSES:
            # Finished before an interruption: the trial only replays its final report (driver.py).
            self.replayed.add(row["trial_id"])
            return
        row["status"] = TrialStatus.RUNNING
        self.started_at[row["trial_id"]] = time.time()
        self.metrics.pop(row["trial_id"], None)  # a restarted trial starts over
        self.flush(force=True)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any):
        row = self._row(trial)
        tid = row["trial_id"]
        if tid in self.replayed:
            return
        row["status"] = TrialStatus.RUNNING
        metric = results.metric_row(tid, result)
        self.metrics.setdefault(tid, []).append(metric)
        self._update(row, result)
        self.dirty = True
        self.flush()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self._row(trial)
        if row["trial_id"] in self.replayed:
            return
        last = trial.last_result or {}
        if last:
            self._update(row, last)
        row["status"] = final_trial_status({"step": row.get("steps"), **last}, self.spec.total_steps())
        self.flush(force=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self._row(trial)
        if row["trial_id"] in self.replayed:
            return
        row["status"] = TrialStatus.ERROR
        self.flush(force=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in trials:
            self._row(trial)
        self.flush(force=True)

    # ---------------------------------------------------------------- rows
    def _update(self, row: dict[str, Any], result: Mapping[str, Any]) -> None:
        tid = row["trial_id"]
        for key in ("steps", "tokens"):
            source = "step" if key == "steps" else "tokens"
            if result.get(source) is not None:
                row[key] = int(result[source])
        if _finite(result.get("val_loss")) is not None:
            row["final_val_loss"] = float(result["val_loss"])
        if result.get("vocab_size") is not None:
            row["vocab_size"] = int(result["vocab_size"])
        if _finite(result.get("above_l0_step")) is not None:
            row["above_l0_step"] = int(result["above_l0_step"])
        if _finite(result.get("l0")) is not None:
            row["l0"] = float(result["l0"])
        if result.get("step") == self.spec.total_steps() and not _finite(result.get("diverged")):
            # the test evaluation at the end of the budget (a periodic one of a trial stopped early is not its result)
            for key in TEST_COLUMNS:
                if _finite(result.get(key)) is not None:
                    row[key] = result[key]
        reports = self.metrics.get(tid, [])
        healthy = [m for m in reports if not _finite(m.get("diverged")) and _finite(m.get("val_loss")) is not None]
        if healthy:
            best = min(healthy, key=lambda m: float(m["val_loss"]))
            row["best_val_loss"] = float(best["val_loss"])
            row["best_step"] = int(best.get("step") or 0)
        if _finite(result.get("diverged")):
            step = _finite(result.get("diverged_step"))
            row["diverged_step"] = int(step) if step is not None else int(result.get("step") or 0)
            row["diverged_cause"] = str(result.get("diverged_cause") or "")
        else:
            row["diverged_step"] = -1
            row["diverged_cause"] = ""
        if tid in self.started_at:
            row["wall_time_s"] = time.time() - self.started_at[tid]

    # ---------------------------------------------------------------- files
    def flush(self, *, force: bool = False) -> None:
        now = time.time()
        since = now - self.last_flush
        # Without news, progress.json is still refreshed now and then so elapsed/ETA stay current.
        due = since >= self.min_interval_s if self.dirty else since >= HEARTBEAT_S
        if not force and not due:
            return
        rows = list(self.rows.values())
        results.write_metrics(self.sweep_dir, [m for tid in self.rows for m in self.metrics.get(tid, [])])
        results.write_trials(self.sweep_dir, rows)
        progress = self.progress(SweepStatus.RUNNING)
        results.write_progress(self.sweep_dir, progress)
        export_progress(progress)  # trials per status etc. to Ray's metrics pipeline (Prometheus/Grafana)
        self.last_flush = now
        self.dirty = False

    def progress(self, status: str) -> dict[str, Any]:
        return build_progress(
            self.sweep_id,
            self.spec,
            list(self.rows.values()),
            status=status,
            elapsed_s=self.elapsed_before + time.time() - self.t0,
            tracking=read_tracking(self.sweep_dir),
            stage=self.stage,
            total_trials=self.total_trials,
        )


def build_progress(
    sweep_id: str,
    spec: SweepSpec,
    rows: list[dict[str, Any]],
    *,
    status: str,
    elapsed_s: float,
    tracking: Mapping[str, Mapping[str, Any]] | None = None,
    stage: str = SEARCH_STAGE,
    total_trials: int | None = None,
) -> dict[str, Any]:
    """progress.json's document from the trial rows and tracking.json (docs/sweep-dir.md); ``total_trials``
    replaces the spec's count (an upper bound for a confirm stage) once the exact count is known."""
    counts = {s: 0 for s in TRIAL_STATUSES}
    for row in rows:
        status_of = str(row.get("status") or TrialStatus.PENDING)
        counts[status_of] = counts.get(status_of, 0) + 1
    total = max(spec.num_trials() if total_trials is None else total_trials, len(rows))
    counts[TrialStatus.PENDING] += max(0, total - len(rows))
    r = best_trial(rows)
    best = None if r is None else best_record(r)
    # Work done in trial-equivalents: finished trials count 1, running ones the share of their budget.
    steps_total = spec.total_steps()
    done = sum(
        1.0 if r.get("status") in FINAL_TRIAL_STATUSES else min(1.0, float(r.get("steps") or 0) / steps_total)
        for r in rows
    )
    finished = status != SweepStatus.RUNNING
    eta = None if finished or done <= 0 else max(0.0, elapsed_s * (total - done) / done)
    return {
        "sweep_id": sweep_id,
        "name": spec.name,
        "status": status,
        "stage": stage,
        "counts": counts,
        "total_trials": total,
        "best": best,
        "tokens": int(sum(int(r.get("tokens") or 0) for r in rows)),
        "elapsed_s": round(elapsed_s, 3),
        "eta_s": None if eta is None else round(eta, 1),
        "tracking": tracking_summary(tracking or {}),
        "updated_at": _utc_now(),
    }
