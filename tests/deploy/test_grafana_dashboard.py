"""The Grafana board and the Prometheus config: they parse, query only series lossweep defines, filter
by the ``sweep`` variable the service links with, and (where ``promtool`` is installed, e.g. Debian's
``prometheus`` package) are valid Prometheus syntax."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from search_spaces.run.ray_metrics import SWEEP_METRICS
from service.grafana import DASHBOARD_SLUG, DASHBOARD_UID, grafana_link
from service.settings import Settings
from trainables.train.ray_metrics import RAY_PROMETHEUS_PREFIX, TRIAL_METRICS

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "lossweep-dashboard.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DEFINED = {spec.prometheus_name for spec in (*TRIAL_METRICS, *SWEEP_METRICS)}
_SERIES = re.compile(rf"\b{RAY_PROMETHEUS_PREFIX}lossweep_[a-z0-9_]+\b")


def _board() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict[str, Any]]:
    return _board()["panels"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p["targets"]]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _board()["templating"]["list"]}


def test_committed_dashboard_is_the_generator_output() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == DASHBOARD.read_text(), (
        f"{DASHBOARD} is stale: python deploy/grafana/build_dashboard.py > deploy/grafana/lossweep-dashboard.json"
    )
    assert module.DASHBOARD_UID == DASHBOARD_UID and module.DASHBOARD_SLUG == DASHBOARD_SLUG


def test_every_query_uses_only_series_lossweep_exports() -> None:
    used: set[str] = set()
    for panel in _panels():
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names = set(_SERIES.findall(target["expr"]))
            assert names, f"panel {panel['title']!r} queries no lossweep series: {target['expr']}"
            assert names <= DEFINED, f"panel {panel['title']!r} queries undefined series {sorted(names - DEFINED)}"
            used |= names
    # The board shows what the issue asks for: val CE, diverged trials, throughput, trial counts.
    for required in (
        "ray_lossweep_trial_val_loss",
        "ray_lossweep_trial_tokens",
        "ray_lossweep_trial_diverged",
        "ray_lossweep_trials_diverged_total",
        "ray_lossweep_trial_tokens_per_s",
        "ray_lossweep_sweep_trials",
    ):
        assert required in used and required in DEFINED


def test_sweep_variable_filters_every_query() -> None:
    variables = _variables()
    sweep = variables["sweep"]
    assert sweep["type"] == "query" and sweep["multi"] and sweep["includeAll"]
    assert "label_values(ray_lossweep_trial_val_loss, sweep)" in json.dumps(sweep["query"])
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for expr in _exprs():
        for selector in re.findall(r"ray_lossweep_[a-z0-9_]+(\{[^}]*\})?", expr):
            assert selector == '{sweep=~"$sweep"}', expr


def test_panels_are_laid_out_without_overlap_and_have_unique_ids() -> None:
    panels = _panels()
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_service_link_opens_the_board_on_one_sweep() -> None:
    board = _board()
    settings = Settings(grafana_url="http://grafana.example:3000/")
    link = grafana_link("demo-3f9a2c1b", settings)
    assert link == f"http://grafana.example:3000/d/{board['uid']}/lossweep?var-sweep=demo-3f9a2c1b"
    assert grafana_link("demo-3f9a2c1b", Settings(grafana_url=None)) is None


def test_prometheus_config_reads_rays_service_discovery_file() -> None:
    from ray._private.ray_constants import PROMETHEUS_SERVICE_DISCOVERY_FILE

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "ray"]
    files = [f for sd in job["file_sd_configs"] for f in sd["files"]]
    assert f"/tmp/ray/{PROMETHEUS_SERVICE_DISCOVERY_FILE}" in files
    assert "targets/*.json" in files


promtool = shutil.which("promtool")


@pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian: apt-get install prometheus)")
def test_prometheus_config_and_every_panel_query_pass_promtool(tmp_path: Path) -> None:
    check = subprocess.run([str(promtool), "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # Grafana substitutes its variables before Prometheus parses a query.
    rules = [
        {"record": f"lossweep:panel_query_{i}", "expr": expr.replace("$sweep", ".*").replace("$__range", "1h")}
        for i, expr in enumerate(_exprs())
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
