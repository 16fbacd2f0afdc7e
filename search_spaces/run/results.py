"""Writers and readers of a sweep directory's result files (the format is docs/sweep-dir.md).

``trials.parquet`` (one row per trial), ``metrics.parquet`` (one row per report), ``progress.json``
and ``spec.yaml``. Writers replace whole files atomically (``search_spaces.run.storage``), so readers may
read while a sweep runs. Torch-free.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from search_spaces.run import storage

# The sweep dir's names and progress I/O live in sweep_dir; re-exported for the readers of this module.
from search_spaces.run.sweep_dir import EVAL_ERROR_COLUMN, EVAL_STATUS_COLUMN, is_eval_column
from search_spaces.run.sweep_dir import MANIFEST_FILE as MANIFEST_FILE
from search_spaces.run.sweep_dir import METRICS_FILE as METRICS_FILE
from search_spaces.run.sweep_dir import PROGRESS_FILE as PROGRESS_FILE
from search_spaces.run.sweep_dir import SPEC_FILE as SPEC_FILE
from search_spaces.run.sweep_dir import TRIALS_FILE as TRIALS_FILE
from search_spaces.run.sweep_dir import read_progress as read_progress
from search_spaces.run.sweep_dir import write_progress as write_progress
from search_spaces.spec.sweep_spec import SIZE_PARAM, SweepSpec, load_yaml
from trainables.losses.registry import COEFFICIENTS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: The test evaluation: mean CE, its standard error over windows and the tokens it covers. A report
#: carries them when it evaluated the test split; trials.parquet, from the one at the end of the budget.
TEST_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("test_ce", "float64"),
    ("test_ce_se", "float64"),
    ("test_tokens", "int64"),
)
TEST_COLUMNS: tuple[str, ...] = tuple(name for name, _ in TEST_COLUMN_TYPES)

#: trials.parquet columns and their Arrow types, in order.
TRIAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trial_id", "string"),
    ("method", "string"),
    ("lr", "float64"),
    *((c, "float64") for c in COEFFICIENTS),
    ("seed", "int64"),
    ("status", "string"),
    ("final_val_loss", "float64"),
    ("best_val_loss", "float64"),
    ("best_step", "int64"),
    ("steps", "int64"),
    ("tokens", "int64"),
    ("wall_time_s", "float64"),
    ("diverged_step", "int64"),
    ("diverged_cause", "string"),
    ("above_l0_step", "int64"),
    ("l0", "float64"),
    *TEST_COLUMN_TYPES,
    ("vocab_size", "int64"),
    ("config_hash", "string"),
    ("stage", "string"),
)

#: The documented per-report metrics (besides ``term_<name>``), in the order metrics.parquet keeps them.
METRIC_COLUMNS: tuple[str, ...] = (
    "step", "tokens", "lr", "val_loss", "val_ce_se", *TEST_COLUMNS, "eval_s", "train_loss", "total_loss",
    "logits_mean", "logits_std", "logits_absmax", "logits_mean_absmax", "logits_mean_std", "log_z_mean",
    "log_z_sq_mean", "mu_norm",
    "emb_anisotropy", "grad_norm", "tokens_per_s", "model_flops_per_s", "mfu", "compile_s", "gpu_mem_peak_gib",
    "elapsed_s", "diverged", "diverged_step", "diverged_cause", "above_l0_step", "l0", "node_id",
)  # fmt: skip
_STRING_METRICS = frozenset({"diverged_cause", "node_id"})
_INT_METRICS = frozenset(
    {"step", "tokens", "diverged", "diverged_step", "above_l0_step", *(n for n, t in TEST_COLUMN_TYPES if t == "int64")}
)


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    return {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64()}[name]


def trials_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, _arrow_type(kind)) for name, kind in TRIAL_COLUMNS])


def metric_row(trial_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The documented metrics of one report (Tune's own keys dropped)."""
    row: dict[str, Any] = {"trial_id": trial_id}
    for key in METRIC_COLUMNS:
        if key in result:
            row[key] = result[key]
    for key, value in result.items():
        if key.startswith("term_") and isinstance(value, int | float):
            row[key] = value
    return row


# ---------------------------------------------------------------------------------------- writers
def _parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _eval_kind(name: str) -> str:
    if name in (EVAL_STATUS_COLUMN, EVAL_ERROR_COLUMN):
        return "string"
    return "int64" if name.endswith("_n") else "float64"


def write_trials(sweep_dir: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """trials.parquet: TRIAL_COLUMNS (with ``model`` after ``method`` where the size is an axis of the
    sweep), then the downstream evaluation's columns when a row has them."""
    import pyarrow as pa

    rows = list(rows)
    evaluated = [name for name in dict.fromkeys(k for row in rows for k in row) if is_eval_column(name)]
    sized = [(SIZE_PARAM, "string")] if any(row.get(SIZE_PARAM) is not None for row in rows) else []
    kinds = [*TRIAL_COLUMNS[:2], *sized, *TRIAL_COLUMNS[2:], *((name, _eval_kind(name)) for name in evaluated)]
    columns = {}
    for name, kind in kinds:
        values = [_cast(row.get(name), kind) for row in rows]
        columns[name] = pa.array(values, type=_arrow_type(kind))
    schema = pa.schema([(name, _arrow_type(kind)) for name, kind in kinds])
    storage.write_bytes(storage.join(sweep_dir, TRIALS_FILE), _parquet_bytes(pa.table(columns, schema=schema)))


def write_metrics(sweep_dir: str, rows: Iterable[Mapping[str, Any]]) -> None:
    import pyarrow as pa

    rows = list(rows)
    names: list[str] = ["trial_id", *METRIC_COLUMNS]
    extra = sorted({k for row in rows for k in row if k not in names})
    fields = []
    arrays = []
    for name in [*names, *extra]:
        if name == "trial_id" or name in _STRING_METRICS:
            kind = "string"
        elif name in _INT_METRICS:
            kind = "int64"
        else:
            kind = "float64"
        fields.append((name, _arrow_type(kind)))
        arrays.append(pa.array([_cast(row.get(name), kind) for row in rows], type=_arrow_type(kind)))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    storage.write_bytes(storage.join(sweep_dir, METRICS_FILE), _parquet_bytes(table))


def write_json(sweep_dir: str, name: str, data: Mapping[str, Any]) -> None:
    storage.write_text(storage.join(sweep_dir, name), json.dumps(dict(data), indent=2, default=str))


def _cast(value: Any, kind: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "string":
            return str(value)
        if kind == "int64":
            f = float(value)
            return int(f) if f == f and abs(f) != float("inf") else None
        f = float(value)
        return f if f == f else None  # NaN is stored as null
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------- readers
def _read_parquet(path: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read_bytes(path))).to_pandas()


def read_trials(sweep_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """trials.parquet as a DataFrame; ``FileNotFoundError`` before the first trial started."""
    return _read_parquet(storage.join(str(sweep_dir), TRIALS_FILE))


def read_metrics(
    sweep_dir: str | os.PathLike[str], trial_id: str | None = None, since_step: int | None = None
) -> pd.DataFrame:
    """metrics.parquet, optionally one trial's rows and only steps > ``since_step`` (for polling)."""
    df = _read_parquet(storage.join(str(sweep_dir), METRICS_FILE))
    if trial_id is not None:
        df = df[df["trial_id"] == trial_id]
    if since_step is not None and "step" in df:
        df = df[df["step"] > since_step]
    return df.reset_index(drop=True)


def read_spec(sweep_dir: str | os.PathLike[str]) -> SweepSpec:
    """The resolved spec the sweep ran with; ``FileNotFoundError`` when spec.yaml is missing."""
    return load_spec(storage.join(str(sweep_dir), SPEC_FILE))


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """A SweepSpec from a YAML (or JSON) file, local or remote."""
    doc = load_yaml(storage.read_bytes(path)) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a sweep spec must be a mapping, got {type(doc).__name__}")
    return SweepSpec.model_validate(doc)


def read_manifest(sweep_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(storage.join(str(sweep_dir), MANIFEST_FILE)))  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None
