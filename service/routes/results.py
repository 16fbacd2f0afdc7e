"""A sweep's results: trials (JSON, CSV, Parquet), live metrics, the report and the best config."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import yaml
from fastapi import APIRouter, Query
from fastapi.responses import Response

from search_spaces.run.sweep_dir import signature
from service.deps import ReaderDep, SessionDep, SettingsDep, StateDep
from service.results import (
    best_config,
    metrics_rows,
    records,
    render_report,
    trials_csv,
    trials_frame,
    trials_parquet,
)
from service.routes.openapi import ERRORS
from service.schemas import BestConfig, MetricsPublic, TrialsPublic
from service.security_headers import REPORT_CSP
from service.single_flight import SingleFlight
from service.sweeps import get_sweep, sweep_links

router = APIRouter(prefix="/v1/sweeps/{sweep_id}", tags=["results"])


class TrialsFormat(StrEnum):
    json = "json"
    csv = "csv"
    parquet = "parquet"


class ReportFormat(StrEnum):
    json = "json"
    md = "md"
    html = "html"


class ConfigFormat(StrEnum):
    yaml = "yaml"
    json = "json"


# The last few renders (matplotlib is slow), each made once however many readers ask for it at once.
_REPORTS: SingleFlight[str] = SingleFlight(kept=32)
_REPORT_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8"}


def _download(content: bytes | str, media_type: str, filename: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=content, media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **(headers or {})},
    )


@router.get(
    "/trials",
    response_model=TrialsPublic,
    summary="The sweep's trials",
    description="One row per trial (docs/sweep-dir.md). `?format=csv|parquet` answers a file download.",
    responses={**ERRORS, 200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
)
def get_trials(
    sweep_id: str,
    session: SessionDep,
    settings: SettingsDep,
    principal: ReaderDep,
    format: Annotated[TrialsFormat, Query()] = TrialsFormat.json,
) -> Response | TrialsPublic:
    sweep = get_sweep(session, sweep_id, principal, settings)
    df = trials_frame(sweep.sweep_dir)
    if format is TrialsFormat.csv:
        return _download(trials_csv(df), "text/csv", f"lossweep-{sweep.id}-trials.csv")
    if format is TrialsFormat.parquet:
        return _download(trials_parquet(df), "application/vnd.apache.parquet", f"lossweep-{sweep.id}-trials.parquet")
    return TrialsPublic(sweep_id=sweep.id, trials=records(df))


@router.get(
    "/trials/{trial_id}/metrics",
    response_model=MetricsPublic,
    summary="One trial's reported metrics (for live curves)",
    description="Rows with `step > since_step` only; poll with the previous answer's `last_step`.",
    responses=ERRORS,
)
def get_metrics(
    sweep_id: str,
    trial_id: str,
    session: SessionDep,
    settings: SettingsDep,
    principal: ReaderDep,
    since_step: Annotated[int | None, Query(ge=-1, le=2**62)] = None,
) -> MetricsPublic:
    sweep = get_sweep(session, sweep_id, principal, settings)
    rows = metrics_rows(sweep.sweep_dir, trial_id, since_step)
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int | float)]
    return MetricsPublic(
        sweep_id=sweep.id,
        trial_id=trial_id,
        since_step=since_step,
        last_step=int(max(steps)) if steps else since_step,
        rows=rows,
    )


@router.get(
    "/report",
    summary="The best-config report as a download",
    description="Rendered from the sweep dir now, so a running sweep gets a partial report (marked so).",
    responses={**ERRORS, 200: {"content": {"text/html": {}, "text/markdown": {}, "application/json": {}}}},
)
def get_report(
    sweep_id: str,
    state: StateDep,
    session: SessionDep,
    settings: SettingsDep,
    principal: ReaderDep,
    format: Annotated[ReportFormat, Query()] = ReportFormat.html,
) -> Response:
    sweep = get_sweep(session, sweep_id, principal, settings)
    # The report's own links depend on the configuration only (LOSSWEEP_PUBLIC_URL, else relative), never
    # on the request, so one render serves every reader.
    links = sweep_links(sweep, state.settings, state.settings.public_url or "")
    link_map = {"trials.csv": f"{links.trials}?format=csv", "trials.parquet": f"{links.trials}?format=parquet"}
    # Keyed on the sweep, the version of its files and whether the reader may see server paths (admins).
    hide = not principal.is_admin
    key = (sweep.id, format.value, signature(sweep.sweep_dir), hide)
    text = _REPORTS.get(key, lambda: render_report(sweep.sweep_dir, format.value, link_map, hide_location=hide))
    partial = "" if sweep.status_enum.is_final else "-partial"
    headers = {"Content-Security-Policy": REPORT_CSP} if format is ReportFormat.html else None
    return _download(text, _REPORT_TYPES[format.value], f"lossweep-{sweep.id}-report{partial}.{format.value}",
                     headers)


@router.get(
    "/best-config",
    response_model=BestConfig,
    summary="The winning configuration",
    description="The best configuration: with a confirm stage, the confirmed one with the lowest mean loss over the "
    "fresh seeds; else the best trial (docs/sweep-dir.md: lowest validation CE, diverged and failed trials "
    "excluded). Its method, coefficients, learning rate, resolved TrainConfig and its own 95% interval over seeds. "
    "`?format=yaml` (the default) is ready to paste into a training config.",
    responses={**ERRORS, 200: {"content": {"application/yaml": {}}}},
)
def get_best_config(
    sweep_id: str,
    session: SessionDep,
    settings: SettingsDep,
    principal: ReaderDep,
    format: Annotated[ConfigFormat, Query()] = ConfigFormat.yaml,
) -> Response | BestConfig:
    sweep = get_sweep(session, sweep_id, principal, settings)
    best = best_config(sweep.id, sweep.sweep_dir)
    if format is ConfigFormat.json:
        return BestConfig.model_validate(best)
    interval = best["interval"]
    spread = f"{interval['mean']:.4f}" if interval["mean"] is not None else "–"
    if interval["low"] is not None:
        spread += f" [95% CI {interval['low']:.4f}, {interval['high']:.4f}]"
    header = (
        f"# Best configuration of sweep {sweep.id} ({sweep.status}): trial {best['trial_id']}, "
        f"method {best['method']}"
        + (f", validation CE {best['val_loss']:.4f}" if best["val_loss"] is not None else "")
        + (f" at step {best['step']}" if best["step"] is not None else "")
        + f"\n# {best['measured']} over {interval['n']} seed(s) of the {best['stage']} stage: {spread}\n"
    )
    body = yaml.safe_dump(best["train_config"] or {"method": best["method"], **best["params"]}, sort_keys=False)
    return _download(header + body, "application/yaml", f"lossweep-{sweep.id}-best-config.yaml")
