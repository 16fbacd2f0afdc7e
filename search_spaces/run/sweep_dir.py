"""The sweep directory's contract (docs/sweep-dir.md): its file names, the trial and sweep statuses and
which of them are final, the rule that picks the best trial, and the few whole-file reads and writes
the driver and the service both make. Everything that reads or writes a sweep dir takes these from here.

Torch-free and pandas-free: the service imports it. Paths are local paths or pyarrow filesystem URIs;
``search_spaces.run.storage`` does the atomic I/O on both.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from search_spaces.run import storage
from search_spaces.spec.sweep_spec import SIZE_PARAM
from trainables.losses.registry import COEFFICIENTS
from trainables.train.manifest import CONFIG_KEY
from trainables.train.manifest import MANIFEST_FILE as RUN_MANIFEST_FILE

# ------------------------------------------------------------------------------------------- files
SPEC_FILE = "spec.yaml"
MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"
TRIALS_FILE = "trials.parquet"
METRICS_FILE = "metrics.parquet"
TRIALS_DIR = "trials"  # trials/<trial_id>/manifest.json, trials/<trial_id>/result.json
#: A trial's run manifest (written by the trainer) and its key of the resolved run config.
TRIAL_MANIFEST_FILE = RUN_MANIFEST_FILE
TRIAL_CONFIG_KEY = CONFIG_KEY
#: A trial's final metrics, written when its Train run has returned: the proof it finished.
TRIAL_RESULT_FILE = "result.json"
TUNE_DIR = "tune"  # Tune's experiment state (what a resume restores)
#: The confirm stage's Tune experiment (its presence means the search has finished).
CONFIRM_TUNE_DIR = "tune-confirm"
RUNS_DIR = "runs"  # the trials' Ray Train runs and checkpoints
OPTUNA_DB = "optuna.db"  # TPE's study (SQLite); in the local cache for a remote sweep dir
#: How the sweep directory is named to a reader who may not see where it lives on the server.
HIDDEN_DIR = "<sweep dir>"
#: The experiment trackers' state (tracking.json): per tracker its status, the error that stopped it and
#: the ids of its runs, so a restarted driver resumes the same runs (docs/tracking.md).
TRACKING_FILE = "tracking.json"
#: The formats of the best-config report, each written as ``report.<format>`` (:func:`report_file`).
REPORT_FORMATS: tuple[str, ...] = ("json", "md", "html")


def report_file(fmt: str) -> str:
    return f"report.{fmt}"


# ---------------------------------------------------------------------------------------- statuses
class TrialStatus(enum.StrEnum):
    """A trial's status in trials.parquet and progress.json counts, in display order."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    TERMINATED = "TERMINATED"
    STOPPED = "STOPPED"  # by the scheduler (ASHA)
    DIVERGED = "DIVERGED"
    ERROR = "ERROR"


class SweepStatus(enum.StrEnum):
    """progress.json's ``status``: RUNNING while the driver runs, then one of the final ones."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# The same as plain strings (what files and JSON hold).
TRIAL_STATUSES: tuple[str, ...] = tuple(s.value for s in TrialStatus)
#: Trial statuses that never change again.
FINAL_TRIAL_STATUSES = frozenset(TRIAL_STATUSES) - {TrialStatus.PENDING.value, TrialStatus.RUNNING.value}
#: Trial statuses that may still change (the web page polls their curves).
LIVE_TRIAL_STATUSES: tuple[str, ...] = tuple(s for s in TRIAL_STATUSES if s not in FINAL_TRIAL_STATUSES)
#: Trials that may hold the best configuration (running ones: best so far).
ELIGIBLE_FOR_BEST: tuple[str, ...] = tuple(
    s.value for s in (TrialStatus.TERMINATED, TrialStatus.STOPPED, TrialStatus.RUNNING)
)
SWEEP_STATUSES: tuple[str, ...] = tuple(s.value for s in SweepStatus)
FINAL_SWEEP_STATUSES = frozenset(SWEEP_STATUSES) - {SweepStatus.RUNNING.value}

#: A tracker's ``status`` in tracking.json and progress.json: it is receiving the sweep, or it broke
#: (its ``error`` says why) and the sweep goes on without it.
TRACKER_STATUSES: tuple[str, ...] = ("ok", "failed")


def final_trial_status(last_result: Mapping[str, Any], total_steps: int) -> TrialStatus:
    """The final status of a trial that returned, from its last report: ``DIVERGED`` when it says
    ``diverged=1``, ``STOPPED`` when it ended (ASHA) before the budget's ``total_steps``, else ``TERMINATED``.
    (A trial that raised is ``ERROR``.)"""
    if finite_float(last_result.get("diverged")):
        return TrialStatus.DIVERGED
    steps = finite_float(last_result.get("step"))
    if steps is not None and int(steps) < total_steps:
        return TrialStatus.STOPPED
    return TrialStatus.TERMINATED


#: A trial's ``stage`` in trials.parquet: the search picks configurations; the confirm stage re-trains
#: the best of every method on fresh seeds, and the verdicts and the best configuration come from it.
SEARCH_STAGE = "search"
CONFIRM_STAGE = "confirm"
TRIAL_STAGES: tuple[str, ...] = (SEARCH_STAGE, CONFIRM_STAGE)


def stage_of(row: Mapping[str, Any]) -> str:
    """A trial row's stage; rows written before stages existed are search trials."""
    value = row.get("stage")
    return value if value in TRIAL_STAGES else SEARCH_STAGE


# ------------------------------------------------------------------------------------ best trial
BEST_RULE = (
    "lowest best validation CE (minimum over the trial's evaluations, without any penalty term) among "
    "trials that did not diverge or fail (TERMINATED, STOPPED early by ASHA, or still RUNNING: best so far); "
    "ties go to the lower final validation CE, then the trial id"
)


def finite_float(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (or numeric text), else None."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def best_key(row: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """The row's rank under :data:`BEST_RULE` (smaller is better), or None when it cannot be the best."""
    if row.get("status") not in ELIGIBLE_FOR_BEST:
        return None
    best = finite_float(row.get("best_val_loss"))
    if best is None:
        return None
    final = finite_float(row.get("final_val_loss"))
    return best, math.inf if final is None else final, str(row.get("trial_id"))


def _int(value: Any) -> int | None:
    f = finite_float(value)
    return None if f is None else int(f)


def row_params(row: Mapping[str, Any]) -> dict[str, Any]:
    """A trial row's hyperparameters: its model preset where the size is an axis, ``lr``, then the
    coefficients it has (the seed is not one)."""
    out: dict[str, Any] = {}
    if isinstance(row.get(SIZE_PARAM), str):
        out[SIZE_PARAM] = row[SIZE_PARAM]
    out["lr"] = finite_float(row.get("lr"))
    out.update({k: v for k in COEFFICIENTS if (v := finite_float(row.get(k))) is not None})
    return out


def best_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """The "best" record of a trial row, the one shape progress.json, the analysis and the service's
    ``/best-config`` show."""
    config_hash = row.get("config_hash")
    return {
        "trial_id": str(row["trial_id"]),
        "method": str(row.get("method")),
        "status": str(row.get("status")),
        "params": row_params(row),
        "seed": _int(row.get("seed")),
        "val_loss": finite_float(row.get("best_val_loss")),
        "final_val_loss": finite_float(row.get("final_val_loss")),
        "step": _int(row.get("best_step")),
        "steps": _int(row.get("steps")),
        "tokens": _int(row.get("tokens")),
        "config_hash": config_hash if isinstance(config_hash, str) else None,
    }


def best_trial(rows: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The best trial row under :data:`BEST_RULE`, or None when no trial qualifies."""
    ranked = [(key, row) for row in rows if (key := best_key(row)) is not None]
    return min(ranked, key=lambda kr: kr[0])[1] if ranked else None


# ------------------------------------------------------------------------------------------- I/O
def path(sweep_dir: str, *parts: str) -> str:
    return storage.join(sweep_dir, *parts)


def trial_manifest_path(sweep_dir: str, trial_id: str) -> str:
    return storage.join(sweep_dir, TRIALS_DIR, trial_id, TRIAL_MANIFEST_FILE)


#: The files a report is computed from.
REPORT_INPUTS: tuple[str, ...] = (SPEC_FILE, MANIFEST_FILE, PROGRESS_FILE, TRIALS_FILE, METRICS_FILE)


def signature(sweep_dir: str) -> tuple[tuple[str, int, int], ...]:
    """(name, size, modification time in ns) of each report input that exists: changes whenever one of
    them is replaced, so it keys a cache of what is computed from them."""
    out = []
    if storage.is_uri(sweep_dir):
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(sweep_dir)
        for info in filesystem.get_file_info([f"{inner}/{name}" for name in REPORT_INPUTS]):
            if info.type == pafs.FileType.File:
                mtime = info.mtime_ns if info.mtime_ns is not None else 0
                out.append((info.base_name, int(info.size or 0), int(mtime)))
        return tuple(out)
    root = storage.local_path(sweep_dir)
    for name in REPORT_INPUTS:
        try:
            st = (root / name).stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        out.append((name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def read_optional(file: str) -> bytes | None:
    """The file's bytes, or None when it (or its directory) does not exist."""
    try:
        return storage.read_bytes(file)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        text = str(exc).lower()
        if "not found" in text or "does not exist" in text:
            return None
        raise


def read_json(file: str) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing, unreadable as JSON or not an object."""
    raw = read_optional(file)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_progress(sweep_dir: str) -> dict[str, Any] | None:
    """progress.json, or None before the driver wrote it (or while it is unreadable)."""
    return read_json(path(sweep_dir, PROGRESS_FILE))


def write_progress(sweep_dir: str, progress: Mapping[str, Any]) -> None:
    storage.write_text(path(sweep_dir, PROGRESS_FILE), json.dumps(dict(progress), indent=2, default=str))


def read_tracking(sweep_dir: str) -> dict[str, dict[str, Any]]:
    """tracking.json: tracker name → its state (``status``, ``error``, run ids…); empty when none ran."""
    return read_json(path(sweep_dir, TRACKING_FILE)) or {}


def record_tracking(sweep_dir: str, tracker: str, **state: Any) -> dict[str, Any]:
    """Merges ``state`` into the tracker's entry of tracking.json (one writer: the sweep driver); returns
    the entry."""
    if state.get("status", "ok") not in TRACKER_STATUSES:
        raise ValueError(f"{state['status']!r} is not a tracker status ({', '.join(TRACKER_STATUSES)})")
    doc = read_tracking(sweep_dir)
    entry = {"status": "ok", "error": None, **doc.get(tracker, {}), **state}
    doc[tracker] = entry
    storage.write_text(path(sweep_dir, TRACKING_FILE), json.dumps(doc, indent=2, default=str))
    return entry


def tracking_summary(doc: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What progress.json (and so the service's ``/v1``) says of each tracker: its status and error."""
    return {name: {"status": entry.get("status"), "error": entry.get("error")} for name, entry in doc.items()}


def write_spec_document(sweep_dir: str, spec: Mapping[str, Any]) -> str:
    """Writes a validated spec (as a plain document: ``SweepSpec.model_dump(mode="json")``) to spec.yaml;
    returns its path. Whoever creates the sweep dir writes it once (the service, ``lossweep sweep run``,
    or the driver when it is given a spec file from elsewhere)."""
    import yaml

    file = path(sweep_dir, SPEC_FILE)
    storage.write_text(file, yaml.safe_dump(dict(spec), sort_keys=False))
    return file


def mark_ended(sweep_dir: str, status: str) -> None:
    """Records a final status in progress.json when the driver was stopped (cancel, crash) before it could
    write one, so reports rendered later say how the sweep ended instead of 'running'."""
    if status not in FINAL_SWEEP_STATUSES:
        raise ValueError(f"{status!r} is not a final sweep status ({', '.join(sorted(FINAL_SWEEP_STATUSES))})")
    progress = read_progress(sweep_dir)
    if progress is None or progress.get("status") in FINAL_SWEEP_STATUSES:
        return
    progress["status"] = status
    progress["eta_s"] = None
    progress["updated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_progress(sweep_dir, progress)


# ----------------------------------------------------------------------------- downstream evaluation
#: trials/<trial_id>/eval.json: a trial's downstream evaluation (``search_spaces.run.evaluation``).
EVAL_FILE = "eval.json"
#: trials.parquet's evaluation columns: the status, the error of a failed one, and per task
#: ``eval_<task>_<stat>`` for each stat of EVAL_STATS (accuracy, its standard error, questions).
EVAL_STATUS_COLUMN = "eval_status"
EVAL_ERROR_COLUMN = "eval_error"
#: An evaluated trial's ``eval_status`` (null: not evaluated). A failed evaluation leaves training results as they are.
EVAL_STATUSES: tuple[str, ...] = ("DONE", "FAILED")
EVAL_STATS: tuple[str, ...] = ("acc", "acc_se", "n")
_EVAL_PREFIX = "eval_"


def eval_column(task: str, stat: str) -> str:
    return f"{_EVAL_PREFIX}{task}_{stat}"


def is_eval_column(name: str) -> bool:
    return name.startswith(_EVAL_PREFIX)


def eval_tasks(columns: Iterable[str]) -> list[str]:
    """The tasks that have evaluation columns, in column order."""
    suffix = f"_{EVAL_STATS[0]}"
    return [c[len(_EVAL_PREFIX) : -len(suffix)] for c in columns if is_eval_column(c) and c.endswith(suffix)]


def trial_eval_path(sweep_dir: str, trial_id: str) -> str:
    return storage.join(sweep_dir, TRIALS_DIR, trial_id, EVAL_FILE)
