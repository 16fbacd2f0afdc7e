"""Build ``lossweep-dashboard.json``, the Grafana dashboard over the series lossweep exports through
Ray's metrics pipeline (``trainables/train/ray_metrics.py``, ``search_spaces/run/ray_metrics.py``).

Series names come from those modules, so a renamed metric cannot leave the board querying a name
that no longer exists (``tests/deploy/test_grafana_dashboard.py`` also checks that the committed JSON
is this script's output)::

    python deploy/grafana/build_dashboard.py > deploy/grafana/lossweep-dashboard.json

Every query aggregates ``by (sweep, trial, method)`` (or coarser): Ray labels each series with the
worker that set it (``WorkerId``), and a trial whose workers were restarted from a checkpoint would
otherwise show up twice. The ``sweep`` variable filters every panel, so a link such as
``<grafana>/d/lossweep/lossweep?var-sweep=<sweep id>`` opens the board on one sweep.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from search_spaces.run.ray_metrics import SWEEP_TRIALS
from trainables.train.ray_metrics import (
    DIVERGED,
    DIVERGED_TOTAL,
    LOGITS_ABSMAX,
    LOGITS_MEAN_ABSMAX,
    LR,
    MU_NORM,
    TOKENS,
    TOKENS_PER_S,
    TRAIN_LOSS,
    VAL_LOSS,
)

DASHBOARD_UID = "lossweep"
DASHBOARD_SLUG = "lossweep"
SWEEP_VAR = "sweep"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_SEL = '{sweep=~"$sweep"}'
_TRIAL = "sweep, trial, method"
# Bar gauges: one horizontal bar per series, its last value in the time range.
_BAR_OPTIONS = {"orientation": "horizontal", "displayMode": "basic",
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}  # fmt: skip


def _per_trial(name: str) -> str:
    return f"max by ({_TRIAL}) ({name}{_SEL})"


def _target(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, table: bool = False
) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        target["instant"] = True
        target["range"] = False
    if table:
        target["format"] = "table"
    return target


def _panel(
    kind: str,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    targets: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
    }
    panel.update(extra)
    return panel


def _timeseries(
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    targets: list[dict[str, Any]],
    *,
    unit: str = "none",
    log_y: bool = False,
    stack: bool = False,
) -> dict[str, Any]:
    custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "showPoints": "auto", "spanNulls": True}
    if log_y:
        custom["scaleDistribution"] = {"type": "log", "log": 10}
    if stack:
        custom.update(stacking={"mode": "normal", "group": "A"}, fillOpacity=60, drawStyle="bars", showPoints="never")
    return _panel(
        "timeseries",
        title,
        description,
        grid,
        targets,
        fieldConfig={"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        options={
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "asc"},
        },
    )


def _val_ce_against_tokens(grid: tuple[int, int, int, int]) -> dict[str, Any]:
    """Validation CE per trial with tokens on the x axis: two range queries as tables, merged on
    (time, labels), renamed, split into one frame per trial, drawn by the XY chart (x = tokens)."""
    return _panel(
        "xychart",
        "Validation CE against tokens (per trial)",
        "One curve per trial: validation cross-entropy (no penalty, the objective) at each report against tokens"
        " trained. Diverged trials end on ln V.",
        grid,
        [
            _target(_per_trial(TOKENS.prometheus_name), ref="A", table=True),
            _target(_per_trial(VAL_LOSS.prometheus_name), ref="B", table=True),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "renameByName": {"Value #A": "tokens", "Value #B": "val_ce"},
                    "excludeByName": {"Time": True},
                },
            },
            {
                "id": "filterByValue",
                "options": {
                    "type": "exclude",
                    "match": "any",
                    "filters": [
                        {"fieldName": "val_ce", "config": {"id": "isNull", "options": {}}},
                        {"fieldName": "tokens", "config": {"id": "isNull", "options": {}}},
                    ],
                },
            },
            {
                "id": "partitionByValues",
                "options": {"fields": ["trial"], "keepFields": False, "naming": {"asLabels": True}},
            },
        ],
        fieldConfig={
            "defaults": {"unit": "none", "custom": {"show": "points+lines", "pointSize": {"fixed": 4}}},
            "overrides": [],
        },
        options={
            "mapping": "auto",
            "series": [
                {
                    "x": {"matcher": {"id": "byName", "options": "tokens"}},
                    "y": {"matcher": {"id": "byName", "options": "val_ce"}},
                }
            ],
            "dims": {"x": "tokens"},
            "legend": {"showLegend": True, "displayMode": "list", "placement": "right"},
            "tooltip": {"mode": "single"},
        },
    )


def build() -> dict[str, Any]:
    val = VAL_LOSS.prometheus_name
    panels: list[dict[str, Any]] = [
        _timeseries(
            "Validation CE per trial",
            "Validation cross-entropy at each report (the objective Tune optimises), one line per trial.",
            (0, 0, 12, 9),
            [_target(_per_trial(val), "{{method}} {{trial}}")],
        ),
        _val_ce_against_tokens((12, 0, 12, 9)),
        _panel(
            "bargauge",
            "Best validation CE so far, per method",
            "Lowest validation CE any trial of each method reached in the dashboard's time range.",
            (0, 9, 8, 8),
            [_target(f"min by (method) (min_over_time({val}{_SEL}[$__range]))", "{{method}}", instant=True)],
            fieldConfig={"defaults": {"unit": "none", "decimals": 4}, "overrides": []},
            options=_BAR_OPTIONS,
        ),
        _panel(
            "bargauge",
            "Diverged trials, per method",
            "Trials that diverged (non-finite loss or gradients, validation CE above ln V, loss spikes).",
            (8, 9, 8, 8),
            [
                _target(
                    f"sum by (method) (max by ({_TRIAL}) (max_over_time({DIVERGED.prometheus_name}{_SEL}[$__range])))",
                    "{{method}}",
                    instant=True,
                )
            ],
            fieldConfig={
                "defaults": {"unit": "none", "decimals": 0, "color": {"mode": "fixed", "fixedColor": "red"}},
                "overrides": [],
            },
            options=_BAR_OPTIONS,
        ),
        _panel(
            "table",
            "Diverged trials",
            "Each diverged trial with its method and cause.",
            (16, 9, 8, 8),
            [
                _target(
                    f"max by ({_TRIAL}, cause) (max_over_time({DIVERGED_TOTAL.prometheus_name}{_SEL}[$__range])) > 0",
                    instant=True,
                    table=True,
                )
            ],
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value": True},
                        "indexByName": {"sweep": 0, "trial": 1, "method": 2, "cause": 3},
                    },
                }
            ],
        ),
        _timeseries(
            "Trials per status",
            "Trials of the selected sweeps in each status, as the sweep driver counts them.",
            (0, 17, 8, 8),
            [_target(f"sum by (status) (max by (sweep, status) ({SWEEP_TRIALS.prometheus_name}{_SEL}))", "{{status}}")],
            stack=True,
        ),
        _timeseries(
            "Throughput",
            "Training tokens per second: all running trials together, and each trial.",
            (8, 17, 16, 8),
            [
                _target(f"sum({_per_trial(TOKENS_PER_S.prometheus_name)})", "all trials", ref="A"),
                _target(_per_trial(TOKENS_PER_S.prometheus_name), "{{method}} {{trial}}", ref="B"),
            ],
            unit="short",
        ),
        _timeseries(
            "Training CE per trial",
            "Training cross-entropy (without penalty terms) at each report.",
            (0, 25, 8, 8),
            [_target(_per_trial(TRAIN_LOSS.prometheus_name), "{{method}} {{trial}}")],
        ),
        _timeseries(
            "‖μ‖ per trial (mean output embedding)",
            "Norm of the mean output embedding; μ-centering keeps it at 0, μ-loss pulls it down.",
            (8, 25, 8, 8),
            [_target(_per_trial(MU_NORM.prometheus_name), "{{method}} {{trial}}")],
        ),
        _timeseries(
            "Max |logit| per trial",
            "Largest absolute logit on the validation batch (global), and the mean over tokens of each token's"
            " largest |logit| (the OEC paper's statistic): what soft-capping and z-loss keep in check.",
            (16, 25, 8, 8),
            [
                _target(_per_trial(LOGITS_ABSMAX.prometheus_name), "global {{method}} {{trial}}"),
                _target(_per_trial(LOGITS_MEAN_ABSMAX.prometheus_name), "per-token {{method}} {{trial}}", ref="B"),
            ],
        ),
        _timeseries(
            "Learning rate per trial",
            "Scheduled learning rate at each report (warmup, then cosine decay).",
            (0, 33, 24, 7),
            [_target(_per_trial(LR.prometheus_name), "{{method}} {{trial}}")],
            log_y=True,
        ),
    ]
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": DASHBOARD_UID,
        "title": "lossweep",
        "description": "Live trial metrics of lossweep sweeps, exported through Ray's metrics pipeline.",
        "tags": ["lossweep", "ray"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "links": [],
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": SWEEP_VAR,
                    "label": "Sweep",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": f"label_values({val}, sweep)", "refId": "sweeps"},
                    "definition": f"label_values({val}, sweep)",
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                    "hide": 0,
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
