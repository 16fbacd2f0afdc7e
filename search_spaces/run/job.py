"""The sweep driver: ``python -m search_spaces.run.job SPEC SWEEP_DIR [--address ADDR]``.

Runs the sweep described by SPEC (a YAML/JSON SweepSpec, local or remote) into SWEEP_DIR (a local path
or a pyarrow URI; its basename is the sweep id). When SWEEP_DIR already holds an interrupted run, the
run is resumed with ``Tuner.restore``: finished trials are kept and never run again, interrupted ones
start over. Connects to ``--address``, else ``RAY_ADDRESS``, else starts/joins Ray as ``ray.init()`` does.

With a ``confirm:`` stage, the search is followed in the same job by the confirm runs (the best
configurations of every method on fresh seeds, ``search_spaces.run.driver.build_confirm_tuner``); a resumed
job whose confirm stage had started resumes that stage.

Exit status 0 when the sweep ran to the end (trials may have diverged or failed: see progress.json),
1 when the driver itself failed, 2 for an invalid spec, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from search_spaces.run import results, storage
from search_spaces.run.sweep_dir import (
    CONFIRM_STAGE,
    SEARCH_STAGE,
    SPEC_FILE,
    TRIAL_MANIFEST_FILE,
    TRIALS_DIR,
    TUNE_DIR,
    SweepStatus,
    read_tracking,
    write_spec_document,
)
from search_spaces.run.tracking import TrackerNotInstalledError, check_clients
from search_spaces.spec.sweep_spec import SweepSpec


def sweep_manifest(spec: SweepSpec, sweep_id: str) -> dict[str, Any]:
    from trainables.train.manifest import git_sha, package_versions

    spec_blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()
    return {
        "sweep_id": sweep_id,
        "name": spec.name,
        "versions": package_versions(),
        "git_sha": git_sha(),
        "corpus": spec.data.corpus,
        "corpus_hash": None,  # known to the trials (trials/<id>/manifest.json); copied here as they report
        "splits": None,  # tokens per split, likewise
        "protocol": protocol(spec),
        "spec_hash": hashlib.sha256(spec_blob).hexdigest()[:16],
        "num_trials": spec.num_trials(),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def protocol(spec: SweepSpec) -> dict[str, Any]:
    """How every trial is trained and measured, as resolved for one trial (``budget.scale`` applied): the
    order of the training windows, each evaluation's tokens and interval, and ``L0``."""
    return {
        "sampling": spec.data.sampling,
        "eval_tokens": spec.data.eval_tokens,
        "eval_interval": spec.eval_interval(),
        "test_tokens": spec.test_tokens(),
        "test_interval": spec.test_interval(),
        "l0": spec.divergence.l0,
    }


def finalize(
    sweep_dir: str,
    sweep_id: str,
    spec: SweepSpec,
    status: str,
    *,
    stage: str = SEARCH_STAGE,
    total_trials: int | None = None,
) -> dict[str, Any]:
    """Writes the final progress.json from the trial rows on disk (whichever callback copy wrote them)."""
    from search_spaces.run.callbacks import build_progress

    try:
        rows = results.read_trials(sweep_dir).to_dict("records")
    except FileNotFoundError:
        rows = []
    rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
    previous = results.read_progress(sweep_dir) or {}
    progress = build_progress(
        sweep_id, spec, rows, status=status, elapsed_s=float(previous.get("elapsed_s") or 0.0),
        tracking=read_tracking(sweep_dir), stage=stage, total_trials=total_trials,
    )  # fmt: skip
    results.write_progress(sweep_dir, progress)
    return progress


def _from_trials(sweep_dir: str, key: str) -> Any:
    """The first value of ``key`` in the trials' manifests (what only the trials know), or None."""
    if storage.is_uri(sweep_dir):
        return None
    from pathlib import Path

    for path in sorted(Path(sweep_dir, TRIALS_DIR).glob(f"*/{TRIAL_MANIFEST_FILE}")):
        try:
            value = json.loads(path.read_text()).get(key)
        except (OSError, ValueError):
            continue
        if value:
            return value
    return None


def confirm_plan(spec: SweepSpec, sweep_dir: str) -> list[dict[str, Any]]:
    """The confirm stage's trials, from the finished search's rows (the same list on every restart)."""
    from search_spaces.analysis.confirm import confirm_configurations
    from search_spaces.run.driver import confirm_params

    if spec.confirm is None:
        return []
    configs = confirm_configurations(results.read_trials(sweep_dir), spec.methods, spec.confirm.top_k)
    return confirm_params(spec, configs)


def _fit_status(grid: Any) -> SweepStatus:
    errors = sum(1 for r in grid if r.error is not None)
    return SweepStatus.FAILED if len(grid) and errors == len(grid) else SweepStatus.SUCCEEDED


def spec_in_place(spec_file: str | None, sweep_dir: str) -> bool:
    """Whether ``spec_file`` is ``sweep_dir``'s own spec.yaml, however either path is spelled."""
    if spec_file is None:
        return False
    return storage.normalize(spec_file) == storage.join(storage.normalize(sweep_dir), SPEC_FILE)


def run(
    spec: SweepSpec, sweep_dir: str, *, address: str | None = None, spec_file: str | None = None
) -> dict[str, Any]:
    """Runs (or resumes) the sweep and returns the final progress document. ``spec_file`` is the file
    ``spec`` was read from: when it is the sweep dir's own spec.yaml (written by the service or the
    CLI), it is not written again."""
    import ray

    from search_spaces.run.callbacks import SweepResultsCallback
    from search_spaces.run.driver import CONFIRM_TUNE_DIR, build_confirm_tuner, build_tuner
    from search_spaces.run.tracking import tracking_callbacks

    sweep_dir = storage.normalize(sweep_dir)
    sweep_id = storage.basename(sweep_dir)
    storage.makedirs(sweep_dir)
    resuming = storage.exists(storage.join(sweep_dir, TUNE_DIR))
    if not spec_in_place(spec_file, sweep_dir):
        write_spec_document(sweep_dir, spec.model_dump(mode="json"))
    manifest = results.read_manifest(sweep_dir) if resuming else None
    if manifest is None:
        manifest = sweep_manifest(spec, sweep_id)
    else:
        manifest.setdefault("resumed_at", []).append(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    results.write_json(sweep_dir, results.MANIFEST_FILE, manifest)
    if not resuming or results.read_progress(sweep_dir) is None:
        from search_spaces.run.callbacks import build_progress

        results.write_progress(sweep_dir, build_progress(sweep_id, spec, [], status=SweepStatus.RUNNING, elapsed_s=0.0))

    if not ray.is_initialized():
        # Every worker of this job gets the cluster's address: Ray Train's PlacementGroupCleaner looks
        # the cluster up without one and, on a machine running several Ray clusters, fails to, leaving
        # the placement groups of trials ASHA stopped holding their CPUs.
        target = address or os.environ.get("RAY_ADDRESS")
        runtime_env = {"env_vars": {"RAY_ADDRESS": target}} if target and "://" not in target else None
        ray.init(address=address, logging_level="WARNING", runtime_env=runtime_env)
    trackers = tracking_callbacks(spec, sweep_dir, sweep_id)
    in_confirm = spec.confirm is not None and storage.exists(storage.join(sweep_dir, CONFIRM_TUNE_DIR))
    stage, total = (CONFIRM_STAGE if in_confirm else SEARCH_STAGE), None
    status = SweepStatus.FAILED
    try:
        if not in_confirm:
            callback = SweepResultsCallback(sweep_dir, spec, sweep_id)
            tuner, resumed = build_tuner(spec, sweep_dir, sweep_id, [callback, *trackers])
            verb = "resuming" if resumed else "starting"
            print(f"lossweep: {verb} sweep {sweep_id} ({spec.num_trials()} trials) in {sweep_dir}", flush=True)
            status = _fit_status(tuner.fit())
        else:
            status = SweepStatus.SUCCEEDED  # the confirm stage starts only after the search has ended
        if spec.confirm is not None and status == SweepStatus.SUCCEEDED:
            plan = confirm_plan(spec, sweep_dir)
            stage, total = CONFIRM_STAGE, spec.search_trials() + len(plan)
            if not plan:
                print("lossweep: no method has a finished, non-diverged search trial: nothing to confirm", flush=True)
            else:
                callback = SweepResultsCallback(sweep_dir, spec, sweep_id, stage=stage, total_trials=total)
                tuner, resumed = build_confirm_tuner(spec, sweep_dir, plan, [callback, *trackers])
                verb = "resuming" if resumed else "starting"
                print(f"lossweep: {verb} the confirm stage ({len(plan)} trials)", flush=True)
                status = _fit_status(tuner.fit())
        if spec.eval is not None and status == SweepStatus.SUCCEEDED:
            _evaluate(spec, sweep_dir)
    except KeyboardInterrupt:
        status = SweepStatus.CANCELLED
        raise
    finally:
        progress = finalize(sweep_dir, sweep_id, spec, status, stage=stage, total_trials=total)
        learned = {key: _from_trials(sweep_dir, key) for key in ("corpus_hash", "splits") if not manifest.get(key)}
        learned = {key: value for key, value in learned.items() if value}
        if learned:
            manifest.update(learned)
            results.write_json(sweep_dir, results.MANIFEST_FILE, manifest)
    return progress


def _evaluate(spec: SweepSpec, sweep_dir: str) -> None:
    """The spec's downstream evaluation; its failures are the trials' (eval_status FAILED), never the sweep's."""
    from search_spaces.run.evaluation import run_evaluations

    assert spec.eval is not None
    print(f"lossweep: evaluating on {', '.join(spec.eval.tasks)} ({spec.eval.on})", flush=True)
    try:
        records = run_evaluations(spec, sweep_dir)
    except Exception as exc:  # e.g. trials.parquet unreadable: training results stay as they are
        print(f"lossweep: downstream evaluation failed: {str(exc).splitlines()[0] if str(exc) else exc!r}", flush=True)
        return
    done = sum(1 for r in records.values() if r.get("status") == "DONE")
    print(f"lossweep: evaluated {done} of {len(records)} trial(s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search_spaces.run.job", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="SweepSpec file (YAML or JSON), local path or URI")
    parser.add_argument("sweep_dir", help="the sweep directory (local path or URI); its basename is the sweep id")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else ray.init())")
    args = parser.parse_args(argv)
    try:
        spec = results.load_spec(args.spec)
    except FileNotFoundError:
        print(f"error: no spec file {args.spec}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        print(f"error: invalid sweep spec {args.spec}:\n{exc}", file=sys.stderr)
        return 2
    try:
        check_clients(spec)
    except TrackerNotInstalledError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        progress = run(spec, args.sweep_dir, address=args.address, spec_file=args.spec)
    except KeyboardInterrupt:
        print("lossweep: sweep interrupted; run the same command again to resume it", file=sys.stderr)
        return 130
    print(json.dumps({"sweep_dir": storage.normalize(args.sweep_dir), **progress}), flush=True)
    return 0 if progress["status"] == SweepStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
