"""The artefacts of a sweep's parent run: its report (HTML and JSON, rendered in memory from the sweep
dir as ``lossweep sweep report`` renders it) and the best configuration."""

from __future__ import annotations

import json
from typing import Any

from search_spaces.run.sweep_dir import best_trial, finite_float, report_file
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.translate import TrialPlan, trial_params

#: The best configuration's artefact: the best trial (``sweep_dir.BEST_RULE``), its parameters and resolved config.
BEST_CONFIG_FILE = "best-config.json"
#: The report formats a parent run holds.
PARENT_REPORT_FORMATS = ("html", "json")


def best_config(sweep_dir: str, spec: SweepSpec) -> dict[str, Any] | None:
    from search_spaces.run.results import read_trials

    try:
        rows = read_trials(sweep_dir).to_dict("records")
    except FileNotFoundError:
        return None
    row = best_trial(rows)
    if row is None:
        return None
    # trials.parquet holds NaN for the coefficients a trial's method does not have
    params = {k: v for k, v in trial_params(row).items() if finite_float(v) is not None or isinstance(v, str)}
    params.setdefault("method", spec.methods[0])
    config = TrialPlan.from_spec(spec).config(params)
    return {
        "trial_id": row["trial_id"],
        "best_val_loss": float(row["best_val_loss"]),
        "params": params,
        "config_hash": config.config_hash(),
        "config": config.to_dict(),
    }


def sweep_artifacts(sweep_dir: str, spec: SweepSpec) -> dict[str, str]:
    """File name → text of each artefact that can be made now (a report that fails to render is left out)."""
    from search_spaces.reports.render import render_text

    out: dict[str, str] = {}
    for fmt in PARENT_REPORT_FORMATS:
        out[report_file(fmt)] = render_text(sweep_dir, fmt)
    best = best_config(sweep_dir, spec)
    if best is not None:
        out[BEST_CONFIG_FILE] = json.dumps(best, indent=2, default=str)
    return out
