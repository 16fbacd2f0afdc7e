"""Reading a sweep's results for the API: trials, metrics, the best configuration and reports. All of
it comes from the sweep dir through ``search_spaces.run.results``/``search_spaces.reports.report``."""

from __future__ import annotations

import io
import json
import math
import threading
from typing import Any

from search_spaces.run.sweep_dir import TRIAL_CONFIG_KEY, best_record, read_json, trial_manifest_path
from search_spaces.run.sweep_dir import best_trial as best_row
from service.errors import ApiError

# matplotlib's pyplot is not thread-safe: one report renders at a time in this process.
_RENDER_LOCK = threading.Lock()


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower() or "no such file" in str(exc).lower()


def trials_frame(sweep_dir: str) -> Any:
    """The trials table (empty before the first trial reports)."""
    import pandas as pd

    from search_spaces.run.results import read_trials

    try:
        df = read_trials(sweep_dir)
    except Exception as exc:
        if _missing(exc):
            return pd.DataFrame()
        raise ApiError(409, f"the sweep's trials are not readable yet: {exc}", loc=("path", "sweep_id")) from exc
    return df if df is not None else pd.DataFrame()


def records(df: Any) -> list[dict[str, Any]]:
    """JSON-safe rows: NaN/inf become null, numpy scalars plain numbers."""
    if df is None or len(df) == 0:
        return []
    return json.loads(df.to_json(orient="records", date_format="iso"))  # type: ignore[no-any-return]


def trials_csv(df: Any) -> bytes:
    return df.to_csv(index=False).encode()


def trials_parquet(df: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    return buf.getvalue()


def metrics_rows(sweep_dir: str, trial_id: str, since_step: int | None) -> list[dict[str, Any]]:
    from search_spaces.run.results import read_metrics

    known = trials_frame(sweep_dir)
    if len(known) == 0 or "trial_id" not in known or trial_id not in set(known["trial_id"].astype(str)):
        raise ApiError(404, f"no trial {trial_id!r} in this sweep (yet)", loc=("path", "trial_id"))
    try:
        df = read_metrics(sweep_dir, trial_id=trial_id, since_step=since_step)
    except Exception as exc:
        if _missing(exc):
            return []
        raise ApiError(409, f"the sweep's metrics are not readable yet: {exc}", loc=("path", "trial_id")) from exc
    return records(df)


def best_trial(df: Any) -> dict[str, Any] | None:
    """The best trial under the sweep dir's rule (``search_spaces.run.sweep_dir.BEST_RULE``)."""
    rows = records(df)
    return best_row(rows)  # type: ignore[return-value]


def best_config(sweep_id: str, sweep_dir: str) -> dict[str, Any]:
    """The best configuration and its own interval over seeds (``search_spaces.analysis.confirm.best_evidence``:
    from the confirm stage when the sweep has one)."""
    from search_spaces.analysis.confirm import best_evidence
    from search_spaces.analysis.trial_frame import measured_source

    frame = trials_frame(sweep_dir)
    evidence = best_evidence(frame) if len(frame) else None
    if evidence is None:
        raise ApiError(404, f"sweep {sweep_id} has no finished, non-diverged trial yet", loc=("path", "sweep_id"))
    row = next(r for r in records(frame) if str(r.get("trial_id")) == evidence["trial_id"])
    record = best_record(row)  # the sweep dir's one best record, plus the evidence of its interval
    return {
        "sweep_id": sweep_id,
        **record,
        "stage": evidence["stage"],
        "measured": measured_source(frame),
        "interval": evidence["interval"],
        "rule": evidence["rule"],
        "train_config": trial_train_config(sweep_dir, record["trial_id"]),
    }


def trial_train_config(sweep_dir: str, trial_id: str) -> dict[str, Any] | None:
    """The resolved TrainConfig from the trial's manifest, when it wrote one."""
    try:
        manifest = read_json(trial_manifest_path(sweep_dir, trial_id))
    except OSError:
        return None
    config = (manifest or {}).get(TRIAL_CONFIG_KEY)
    return config if isinstance(config, dict) else None


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def render_report(sweep_dir: str, fmt: str, links: dict[str, str], *, hide_location: bool = True) -> str:
    """The report rendered in memory: a GET never writes into the sweep dir. ``hide_location``: without
    the server's paths (for readers who are not admins)."""
    from search_spaces.reports.render import render_text

    with _RENDER_LOCK:
        return render_text(sweep_dir, fmt, links=links, hide_location=hide_location)
