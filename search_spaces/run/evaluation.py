"""The sweep's downstream evaluation, after training (the spec's ``eval:``).

Which trials: ``eval.on`` (``trainables.downstream.defaults.EVAL_TARGETS``; :func:`targets`). Each is
evaluated from its last checkpoint in a Ray task holding one of the trial's workers' resources (its
CPUs or its GPU), several at a time as the cluster allows. Each result goes to
``trials/<trial_id>/eval.json`` (a trial already evaluated on the same tasks and limit is not evaluated
again when a sweep resumes), then every result is merged into trials.parquet's evaluation columns
(``search_spaces.run.sweep_dir``: ``eval_status``, ``eval_error``, ``eval_<task>_acc`` / ``_acc_se`` /
``_n``). A failed evaluation marks that trial's ``eval_status`` FAILED with the error's first line and
changes nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from search_spaces.run import results, storage
from search_spaces.run.sweep_dir import (
    CONFIRM_STAGE,
    EVAL_ERROR_COLUMN,
    EVAL_STATUS_COLUMN,
    EVAL_STATUSES,
    best_key,
    best_trial,
    eval_column,
    is_eval_column,
    read_json,
    stage_of,
    trial_eval_path,
    trial_manifest_path,
)
from search_spaces.spec.sweep_spec import EvalSpec, SweepSpec
from trainables.losses.registry import COEFFICIENTS

DONE, FAILED = EVAL_STATUSES
#: Trials that end with a checkpoint (a diverged run never takes one; a failed one may have none).
_EVALUABLE = ("TERMINATED", "STOPPED")


def _configuration(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row.get("method"), row.get("lr"), *(row.get(c) for c in COEFFICIENTS))


def targets(rows: Iterable[Mapping[str, Any]], on: str) -> list[Mapping[str, Any]]:
    """The trials ``eval.on`` names: ``best`` the best trial (the sweep's best rule); ``confirm`` the
    confirm stage's trials (each method's best configuration on the fresh seeds), or without a confirm
    stage each method's best configuration at every seed it ran with; ``all`` every trial that finished."""
    finished = [r for r in rows if r.get("status") in _EVALUABLE]
    if on == "all":
        return finished
    confirmed = [r for r in finished if stage_of(r) == CONFIRM_STAGE]
    if on == "confirm" and confirmed:
        return sorted(confirmed, key=lambda r: (str(r.get("method")), r.get("seed") or 0))
    if on == "best":
        best = best_trial(finished)
        return [best] if best is not None else []
    chosen: list[Mapping[str, Any]] = []
    for method in dict.fromkeys(r.get("method") for r in finished):
        best = best_trial(r for r in finished if r.get("method") == method)
        if best is not None:
            same = [r for r in finished if _configuration(r) == _configuration(best)]
            chosen.extend(sorted(same, key=lambda r: (r.get("seed") or 0, best_key(r) or ())))
    return chosen


def checkpoint_of(sweep_dir: str, trial_id: str) -> str:
    """The last checkpoint of a trial (its Train run folder is in its manifest); ``ValueError`` when none."""
    from trainables.downstream.checkpoint import is_remote, latest_checkpoint, latest_remote_checkpoint

    manifest = read_json(trial_manifest_path(sweep_dir, trial_id)) or {}
    run_path = manifest.get("run_path")
    if run_path and storage.is_uri(sweep_dir) and not is_remote(run_path):
        # Ray gives a run's path on object storage without its scheme: the sweep dir's scheme is the one.
        run_path = f"{str(sweep_dir).split('://', 1)[0]}://{run_path.lstrip('/')}"
    if not run_path:
        found = None
    elif is_remote(run_path):
        found = latest_remote_checkpoint(run_path)
    else:
        found = latest_checkpoint(Path(run_path))
    if found is None:
        raise ValueError(f"trial {trial_id} has no checkpoint (run folder {run_path or 'unknown'})")
    return str(found)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    cause = getattr(exc, "cause", None)  # a Ray task's error wraps the task's own exception
    if cause is not None:
        text = str(cause).strip() or text
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _record(sweep_dir: str, trial_id: str, spec: EvalSpec, status: str, **fields: Any) -> dict[str, Any]:
    record = {"status": status, "tasks": list(spec.tasks), "limit": spec.limit, **fields}
    storage.write_text(trial_eval_path(sweep_dir, trial_id), json.dumps(record, indent=2))
    return record


def run_evaluations(spec: SweepSpec, sweep_dir: str) -> dict[str, dict[str, Any]]:
    """Evaluates the trials ``spec.eval.on`` names, records each result and merges them into
    trials.parquet. Returns ``{trial_id: eval record}``. Never raises for a trial's failure."""
    import ray

    from trainables.downstream.run import evaluate_checkpoint

    assert spec.eval is not None
    ev = spec.eval
    rows = results.read_trials(sweep_dir).to_dict("records")
    resources = spec.resources.resources()
    per_worker = resources.per_worker()
    task = ray.remote(evaluate_checkpoint).options(
        num_cpus=per_worker["CPU"], num_gpus=per_worker.get("GPU", 0.0), max_retries=0
    )
    pending: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {}
    for row in targets(rows, ev.on):
        trial_id = str(row["trial_id"])
        done = read_json(trial_eval_path(sweep_dir, trial_id))
        if done and done.get("status") == DONE and done.get("tasks") == ev.tasks and done.get("limit") == ev.limit:
            records[trial_id] = done
            continue
        try:
            checkpoint = checkpoint_of(sweep_dir, trial_id)
            manifest = read_json(trial_manifest_path(sweep_dir, trial_id)) or {}
        except ValueError as exc:
            records[trial_id] = _record(sweep_dir, trial_id, ev, FAILED, error=_first_line(exc))
            continue
        pending[trial_id] = task.remote(
            checkpoint,
            ev.tasks,
            config=manifest.get("config"),
            limit=ev.limit,
            corpus=ev.corpus,
            batch_size=ev.batch_size,
            threads=resources.threads_per_worker(),
        )
    for trial_id, ref in pending.items():
        try:
            scores = ray.get(ref)
        except Exception as exc:  # the trial's evaluation failed: say why, keep its training results
            records[trial_id] = _record(sweep_dir, trial_id, ev, FAILED, error=_first_line(exc))
            print(f"lossweep: evaluation of trial {trial_id} failed: {records[trial_id]['error']}", flush=True)
            continue
        records[trial_id] = _record(sweep_dir, trial_id, ev, DONE, scores=scores)
    merge_into_trials(sweep_dir, records)
    return records


def eval_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """One trial's evaluation columns from its eval.json record."""
    fields: dict[str, Any] = {EVAL_STATUS_COLUMN: record.get("status"), EVAL_ERROR_COLUMN: record.get("error")}
    for task, score in (record.get("scores") or {}).items():
        fields[eval_column(task, "acc")] = score.get("acc")
        fields[eval_column(task, "acc_se")] = score.get("acc_se")
        fields[eval_column(task, "n")] = score.get("n")
    return fields


def merge_into_trials(sweep_dir: str, records: Mapping[str, Mapping[str, Any]]) -> None:
    """Rewrites trials.parquet with the evaluation columns of ``records`` (other columns unchanged)."""
    rows = results.read_trials(sweep_dir).to_dict("records")
    merged = []
    for row in rows:
        # pandas reads a null as NaN: back to None, or a string column would say "nan"
        plain = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items() if not is_eval_column(k)}
        record = records.get(str(row["trial_id"]))
        merged.append({**plain, **eval_fields(record)} if record is not None else plain)
    results.write_trials(sweep_dir, merged)
