"""The best-config report of a sweep: ``report.json``, ``report.md`` and a self-contained ``report.html``.

:func:`build` reads a sweep directory (through :mod:`search_spaces.run.results`) into one JSON-ready
document plus its figures (:mod:`search_spaces.reports.figures`); :mod:`search_spaces.reports.render`
writes it out. The document depends only on the sweep directory's content (no clock, no randomness).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import yaml

from search_spaces.analysis import paper_reference, sizes, trial_frame
from search_spaces.analysis import sensitivity as analysis
from search_spaces.analysis.best import best_configs
from search_spaces.analysis.confirm import confirm_comparison
from search_spaces.analysis.size_comparison import size_comparison
from search_spaces.analysis.speedup import SPEEDUP_RULE, convergence_speedup
from search_spaces.reports import insights, insights_report, plots
from search_spaces.reports.figures import figures as draw_figures
from search_spaces.reports.figures import heatmap_terms
from search_spaces.run import storage
from search_spaces.run.sweep_dir import BEST_RULE, FINAL_SWEEP_STATUSES, HIDDEN_DIR, LIVE_TRIAL_STATUSES, SweepStatus
from search_spaces.spec.sweep_spec import SIZE_PARAM
from trainables.losses.registry import TERMS
from trainables.model.presets import model_preset

SCHEMA = "lossweep.report/1"
_TRIAL_COLUMNS = (
    "trial_id",
    "method",
    "lr",
    "coefficients",
    "seed",
    "status",
    "final_val_loss",
    "best_val_loss",
    "test_ce",
    "test_ce_se",
    "stage",
    "best_step",
    "steps",
    "tokens",
    "wall_time_s",
    "diverged_step",
    "diverged_cause",
    "above_l0_step",
)
_MAX_HEATMAP_SIDE = 12


@dataclass(frozen=True)
class Report:
    """The report's data (what ``report.json`` holds) and its figures (HTML only)."""

    data: dict[str, Any]
    plots: tuple[plots.Plot, ...]


# ---------------------------------------------------------------------------------------------------
# Reading the sweep directory
# ---------------------------------------------------------------------------------------------------


def _load(
    sweep_dir: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    from search_spaces.run import results

    problems: list[str] = []
    # A sweep that has just started has no trials.parquet yet: its report says so instead of failing.
    trials = _or_none(results.read_trials, sweep_dir)
    metrics = _or_none(results.read_metrics, sweep_dir)
    progress = _or_none(results.read_progress, sweep_dir)
    manifest = _or_none(results.read_manifest, sweep_dir)
    try:
        spec = _spec_dict(_or_none(results.read_spec, sweep_dir))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        spec = None
        problems.append(f"spec.yaml is not a valid sweep spec, so it is not shown: {str(exc).splitlines()[0]}")
    return (
        trials if trials is not None else pd.DataFrame(),
        metrics if metrics is not None else pd.DataFrame(),
        progress,
        spec,
        manifest,
        problems,
    )


def _or_none(read: Any, sweep_dir: str) -> Any:
    try:
        return read(sweep_dir)
    except FileNotFoundError:
        return None


def _spec_dict(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    if hasattr(spec, "model_dump"):
        return spec.model_dump(mode="json")
    if isinstance(spec, Mapping):
        return dict(spec)
    raise TypeError(f"read_spec returned {type(spec).__name__}, expected a SweepSpec or a mapping")


def _sweep_id(sweep_dir: str) -> str:
    return storage.basename(sweep_dir)


# ---------------------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------------------


def scrub_location(value: Any, sweep_dir: str) -> Any:
    """``value`` (JSON-like) with every text that holds the sweep directory's path naming it ``HIDDEN_DIR``."""
    prefix = str(sweep_dir).rstrip("/")
    if isinstance(value, str):
        return value.replace(prefix, HIDDEN_DIR) if prefix else value
    if isinstance(value, Mapping):
        return {k: scrub_location(v, prefix) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_location(v, prefix) for v in value]
    return value


def without_location(report: Report, sweep_dir: str) -> Report:
    """The report with the sweep directory's location taken out: ``sweep.dir`` is None and every text
    that holds the directory's path (the manifest's paths, a reading problem) names it ``HIDDEN_DIR``."""
    data = scrub_location(report.data, sweep_dir)
    data["sweep"]["dir"] = None
    return dataclasses.replace(report, data=data)


def build(sweep_dir: str, *, links: Mapping[str, str] | None = None) -> Report:
    """Reads ``sweep_dir`` and computes everything the report shows."""
    sweep_dir = str(sweep_dir)
    trials, metrics, progress, spec, manifest, problems = _load(sweep_dir)
    return build_from(sweep_dir, trials, metrics, progress, spec, manifest, links=links, problems=problems)


def build_from(
    sweep_dir: str,
    trials: pd.DataFrame,
    metrics: pd.DataFrame | None,
    progress: Mapping[str, Any] | None,
    spec: Mapping[str, Any] | None,
    manifest: Mapping[str, Any] | None,
    *,
    links: Mapping[str, str] | None = None,
    problems: Sequence[str] = (),
) -> Report:
    """The report of already-loaded frames (the service may hold them already)."""
    trials = _sorted_trials(trials)
    metrics = metrics if metrics is not None else pd.DataFrame()
    missing: list[str] = list(problems)
    counts = trial_frame.status_counts(trials)
    unfinished = sum(counts[s] for s in LIVE_TRIAL_STATUSES)
    status = str((progress or {}).get("status") or (SweepStatus.RUNNING if unfinished else "UNKNOWN"))
    ended = status in FINAL_SWEEP_STATUSES
    partial = not ended and (status == SweepStatus.RUNNING or unfinished > 0)
    if trials.empty:
        missing.append("no trials have reported yet: every section below is empty")
    if partial:
        missing.append("the sweep is still running: tables and figures show the trials reported so far")
    elif unfinished:
        missing.append(
            f"the sweep ended ({status}) with {unfinished} trial(s) still marked running or pending: "
            "they never finished and count only where noted"
        )
    vocab = trial_frame.vocab_size_of(trials) if len(trials) else None
    l0 = trial_frame.sweep_l0(trials)
    # Sections that follow one baseline or one family per method show the largest size of a sweep over sizes.
    largest, focus = sizes.largest(trials)
    if largest is not None:
        missing.append(
            f"this sweep trains {len(sizes.sizes_of(trials))} model sizes: every table compares the methods within "
            f"each size; the heat maps, the speed-up and the mechanism figures are of the largest, {largest}"
        )

    best = (
        best_configs(trials)
        if len(trials)
        else {"rule": BEST_RULE, "overall": None, "per_method": {}, "missing": []}
    )
    missing += best["missing"]
    for record in ([best["overall"]] if best["overall"] else []) + list(best["per_method"].values()):
        record["yaml"] = best_yaml(record, spec)

    lrs_table = analysis.lr_sensitivity(trials) if len(trials) else pd.DataFrame(columns=analysis.LRS_COLUMNS)
    families = trial_frame.records(lrs_table)
    with_lrs = [f for f in families if f["lrs"] is not None]
    if len(trials) and not with_lrs:
        missing.append(
            "no LR sensitivity: it needs finished trials at two or more learning rates with the same method and "
            "coefficients"
        )
    paper = paper_reference.paper_comparison(lrs_table)
    if paper is not None:
        paper["rows"] = _paper_rows(families) if largest is None else []

    lam_rows = trial_frame.records(analysis.lambda_robustness(trials)) if len(trials) else []
    heatmaps, heat_missing = _heatmaps(focus)
    missing += heat_missing

    deltas = trial_frame.records(analysis.paired_deltas(trials)) if len(trials) else []
    lrs_diffs = trial_frame.records(analysis.lrs_differences(trials)) if len(trials) else []
    confirm = confirm_comparison(trials)
    missing += confirm["missing"]
    speedup = (
        convergence_speedup(focus, metrics)
        if len(trials)
        else {"rule": SPEEDUP_RULE, "baseline": None, "methods": [], "missing": []}
    )
    missing += speedup["missing"]
    curves = _best_curves(best, metrics)
    if best["per_method"] and not curves:
        missing.append("no training curves: metrics.parquet holds no reports of the best trials")
    if len(trials) and "baseline" not in set(trials["method"]):
        missing.append("no baseline trials: paired deltas and speed-up against baseline need them")

    spec_doc = dict(spec) if spec is not None else None
    if spec_doc is None and not problems:
        missing.append("spec.yaml is missing")
    if manifest is None:
        missing.append("manifest.json is missing")
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "sweep": {
            "id": str((progress or {}).get("sweep_id") or _sweep_id(sweep_dir)),
            "name": str((progress or {}).get("name") or (spec_doc or {}).get("name") or _sweep_id(sweep_dir)),
            "dir": sweep_dir,
            "status": status,
            "partial": partial,
            "counts": counts,
            "trials": len(trials),
            "total_trials": (progress or {}).get("total_trials"),
            "tokens": int(pd.to_numeric(trials.get("tokens"), errors="coerce").fillna(0).sum()) if len(trials) else 0,
            "trial_wall_time_s": float(pd.to_numeric(trials.get("wall_time_s"), errors="coerce").fillna(0).sum())
            if len(trials)
            else 0.0,
            "elapsed_s": (progress or {}).get("elapsed_s"),
            "eta_s": (progress or {}).get("eta_s"),
            "updated_at": (progress or {}).get("updated_at"),
            "vocab_size": vocab,
            "l0": l0,
            "resources": _resources(spec_doc),
            "spec": spec_doc,
            "manifest": dict(manifest) if manifest is not None else None,
        },
        "missing": missing,
        "best": best,
        "lr_sensitivity": {
            "rule": analysis.LRS_RULE,
            "stable_rule": analysis.STABLE_RULE,
            "families": families,
            "paper": paper,
        },
        "sizes": size_comparison(analysis.primary_families(lrs_table), tied=_tied(spec)) if len(lrs_table) else None,
        "lambda_robustness": {"rows": lam_rows, "heatmaps": heatmaps},
        "measured": trial_frame.measured_source(trials),
        "statistics": analysis.statistics_rules(),
        "paired_deltas": {"rule": analysis.DELTA_RULE, "rows": deltas},
        "lrs_differences": lrs_diffs,
        "confirm": confirm,
        "downstream": _downstream(trials),
        "speedup": speedup,
        "curves": curves,
        "importance": insights.param_importance(trials, l0),
        "mechanism": insights.mechanism_vs_lr(focus, metrics, l0),
        "trials": _trial_rows(trials),
        "links": dict(sorted((links or {}).items())),
    }
    data = trial_frame.to_json_value(data)
    figures = draw_figures(data, lrs_table, focus) + insights_report.figures(data)
    data["plots"] = [{"name": p.name, "caption": p.caption, "alt": p.alt} for p in figures]
    return Report(data=data, plots=tuple(figures))


def _downstream(trials: pd.DataFrame) -> dict[str, Any]:
    """Per-task accuracy ± SE of the evaluated trials beside their loss, and the per-seed differences
    against the baseline (``search_spaces.analysis.downstream``)."""
    from search_spaces.analysis.downstream import DIFFERENCE_RULE, paired_task_differences, task_table

    table = task_table(trials)
    return {**table, "rule": DIFFERENCE_RULE, "paired": paired_task_differences(table)}


def _sorted_trials(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return trials
    order = trials["method"].map(lambda m: (trial_frame.method_order(str(m)), str(m))).map(str)
    keyed = trials.assign(_m=order, _lr=pd.to_numeric(trials["lr"], errors="coerce"))
    return (
        keyed.sort_values(["_m", "_lr", "seed", "trial_id"], kind="mergesort")
        .drop(columns=["_m", "_lr"])
        .reset_index(drop=True)
    )


# Spec fields a pinned re-run keeps from the sweep (search, scheduler and resources take their defaults).
_KEPT_SPEC_FIELDS = ("model", "data", "budget", "precision")


def best_yaml(record: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> str:
    """A sweep spec (YAML) that re-runs the best configuration alone: its method, learning rate,
    coefficients, seed and model size, with the sweep's model settings, data, budget and precision."""
    params = dict(record["params"])
    doc: dict[str, Any] = {"name": f"{(spec or {}).get('name') or 'sweep'}-best-{record['method']}".replace("+", "-")}
    for key in _KEPT_SPEC_FIELDS:
        if spec and key in spec:
            doc[key] = spec[key]
    size = params.pop(SIZE_PARAM, None)
    if size is not None:  # a sweep over sizes: the re-run trains the best trial's size alone
        doc["model"] = {**dict(doc.get("model") or {}), "preset": size}
    doc["methods"] = [record["method"]]
    doc["lr"] = params.pop("lr", None)
    if params:
        doc["coefficients"] = params
    if record.get("seed") is not None:
        doc["seeds"] = [record["seed"]]
    doc["search"] = {"algorithm": "grid"}
    header = (
        f"# best {record['method']} trial {record['trial_id']}: validation CE "
        f"{_num(record.get('val_loss'))} at step {record.get('step')}\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False)


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _resources(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not spec:
        return None
    out: dict[str, Any] = {}
    if isinstance(spec.get("resources"), Mapping):
        out.update(spec["resources"])
    if spec.get("max_concurrent_trials") is not None:
        out["max_concurrent_trials"] = spec["max_concurrent_trials"]
    return out or None


def _tied(spec: Mapping[str, Any] | None) -> bool:
    """Whether the sweep's models tie their head to the input embedding (its spec's presets and overrides)."""
    model = (spec or {}).get("model") or {}
    preset = model.get("preset") or "tiny"
    first = preset[0] if isinstance(preset, list) else preset
    try:
        return bool(model_preset(str(first), **(model.get("overrides") or {})).tie_weights)
    except (ValueError, TypeError):
        return False


def _paper_rows(families: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ours beside the paper's LRS, one row per method present in both."""
    rows = []
    primary = {f["method"]: f for f in analysis.primary_families(pd.DataFrame(families))} if families else {}
    for method, fam in primary.items():
        paper = {size: table.get(method) for size, table in paper_reference.PAPER_LRS.items()}
        tied = paper_reference.PAPER_LRS_TIED_221M.get(method)
        if all(v is None for v in paper.values()) and tied is None:
            continue
        rows.append(
            {"method": method, "label": fam["label"], "ours": fam["lrs"], "paper": paper, "paper_tied_221M": tied}
        )
    return rows


def _heatmaps(trials: pd.DataFrame) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    missing: list[str] = []
    if trials.empty:
        return out, missing
    methods = set(trials["method"])
    for method, columns in heatmap_terms():
        if method not in methods:
            continue
        if len(columns) > 1:
            _pair_heatmap(trials, method, columns, out, missing)
            continue
        column = columns[0]
        matrix = analysis.grid_matrix(trials, column, "lr", methods=[method])
        if len(matrix["rows"]) < 2:
            swept = ", ".join(f"{v:g}" for v in matrix["rows"]) or "none finished"
            missing.append(
                f"no λ-robustness heat map for {method}: the sweep used one {column} ({swept}); "
                "the oec-lambda-robustness preset sweeps λ"
            )
            continue
        if len(matrix["rows"]) > _MAX_HEATMAP_SIDE or len(matrix["cols"]) > _MAX_HEATMAP_SIDE:
            matrix["kind"] = "scatter"
        else:
            matrix["kind"] = "grid"
        out[method] = {"row": column, "col": "lr", **matrix}
    return out, missing


def _pair_heatmap(
    trials: pd.DataFrame, method: str, columns: tuple[str, ...], out: dict[str, Any], missing: list[str]
) -> None:
    row, col = columns
    matrix = analysis.grid_matrix(trials, row, col, methods=[method], reduce="min")
    if len(matrix["rows"]) < 2 and len(matrix["cols"]) < 2:
        a, b = (c.removeprefix(f"{method}_") for c in columns)
        missing.append(f"no {TERMS[method].label} {a} x {b} map: fewer than two finished {a}s or {b}s")
        return
    side_ok = len(matrix["rows"]) <= _MAX_HEATMAP_SIDE and len(matrix["cols"]) <= _MAX_HEATMAP_SIDE
    filled = sum(v is not None for line in matrix["values"] for v in line)
    dense = filled >= 0.5 * len(matrix["rows"]) * len(matrix["cols"])
    matrix["kind"] = "grid" if side_ok and dense else "scatter"
    out[method] = {"row": row, "col": col, **matrix}


def _best_curves(best: Mapping[str, Any], metrics: pd.DataFrame) -> list[dict[str, Any]]:
    if metrics.empty or "trial_id" not in metrics.columns:
        return []
    out = []
    for method in trial_frame.sort_methods(best["per_method"]):
        record = best["per_method"][method]
        rows = metrics[metrics["trial_id"] == record["trial_id"]]
        if rows.empty or "tokens" not in rows.columns:
            continue
        rows = rows.sort_values(["tokens", "step"] if "step" in rows.columns else ["tokens"], kind="mergesort")
        curve: dict[str, Any] = {"method": method, "trial_id": record["trial_id"]}
        for column in ("step", "tokens", "val_loss", *[k for k, _ in plots.DIAGNOSTICS]):
            if column in rows.columns:
                curve[column] = [trial_frame.to_json_value(v) for v in pd.to_numeric(rows[column], errors="coerce")]
        out.append(curve)
    return out


def _trial_rows(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """The trial table; ``measured`` is the loss every analysis counts for a finished trial (its measured
    loss capped at L0, a diverged run at L0), so a page plots the same values as the tables."""
    if trials.empty:
        return []
    columns = trial_frame.hyperparameter_columns(trials)
    l0 = trial_frame.sweep_l0(trials)
    out = []
    for rec in trials.to_dict("records"):
        params = trial_frame.trial_params(rec, columns)
        params.pop("lr", None)
        size = params.pop(SIZE_PARAM, None)  # its own field: coefficients are numbers
        row = {k: rec.get(k) for k in _TRIAL_COLUMNS if k != "coefficients"}
        row["coefficients"] = params
        finished = rec.get("status") in trial_frame.FINISHED
        row["measured"] = trial_frame.capped_final(rec, l0) if finished and l0 is not None else None
        row[SIZE_PARAM] = size
        keys = (*_TRIAL_COLUMNS, "measured", *((SIZE_PARAM,) if size is not None else ()))
        out.append({k: trial_frame.to_json_value(row.get(k)) for k in keys})
    return out


