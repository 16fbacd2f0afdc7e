"""The sweep page of a real tiny sweep on the session's local Ray, in headless Chromium: the curves gain
points as the trial reports (fetched incrementally with ``since_step``), and the owner's cancel button
ends the sweep CANCELLED. One trial of the tiny model: the machine is shared."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.web_ui import allowed_errors, click, evaluate, open_page, ready, screenshot, submit, wait_until
from tests.fixtures.browser import DevTools
from tests.fixtures.ray_cluster import stop_lossweep_jobs
from tests.fixtures.service import LiveService

pytestmark = [pytest.mark.browser, pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def ray_service(service_factory: Callable[..., LiveService], ray_cluster: Any) -> Iterator[LiveService]:
    live = service_factory(ray_address=ray_cluster.dashboard_url, ray_auth_token=ray_cluster.auth_token or None)
    try:
        yield live
    finally:
        stop_lossweep_jobs(ray_cluster)


def test_live_curves_grow_and_cancel_ends_the_sweep(
    browser: DevTools, ray_service: LiveService, tmp_path: Path
) -> None:
    browser.call("Network.enable")
    # Long enough to still run when cancelled; evaluating every 5 steps gives the curve points to gain.
    sweep = submit(ray_service, "alice", "live-page", **{"budget.steps": 100_000, "budget.eval_interval": 5})
    open_page(browser, f"{ray_service.url}/ui/#/sweeps/{sweep['id']}", token=ray_service.tokens["alice"])
    ready(browser)
    points = "Number(document.getElementById('curves').dataset.points || 0)"
    first = wait_until(browser, points, timeout=240, what="the running trial's first validation points")
    more = wait_until(browser, f"{points} > {first} && {points}", timeout=120, what="more points as the trial reports")
    assert more > first
    assert evaluate(browser, "document.querySelector('#sweep-head .badge').dataset.status") == "RUNNING"
    screenshot(browser, tmp_path / "artifacts" / "live-sweep.png")
    # Incremental: after the first poll, each metrics request asks only for rows after the last step seen.
    urls = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    metrics = [u for u in urls if "/metrics" in u]
    assert metrics and any("since_step=" in u for u in metrics), metrics

    click(browser, "#cancel")
    click(browser, "#cancel")
    wait_until(browser, "document.querySelector('#sweep-head .badge').dataset.status === 'CANCELLED'", timeout=180,
               what="the sweep CANCELLED")
    assert evaluate(browser, "!document.getElementById('cancel')")
    screenshot(browser, tmp_path / "artifacts" / "live-cancelled.png")
    assert allowed_errors(browser) == []
