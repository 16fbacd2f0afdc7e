"""The service's web pages in a real headless Chromium against a real service (uvicorn, SQLite): the sweeps
list, a sweep page with every view, the submit page with the API's validation errors beside the field,
cancelling (and not being offered it without the right), read-only public access, a path prefix.
Screenshots go to the test's tmp dir (``pytest --basetemp=DIR`` keeps them somewhere known).

Ray is unreachable here (sweeps stay QUEUED until a test gives one results); the live sweep on a real
local Ray is in ``test_web_ui_live.py``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.browser.web_ui import (
    TASK,
    allowed_errors,
    click,
    column,
    evaluate,
    finished_sweep,
    open_page,
    ready,
    screenshot,
    submit,
    text_of,
    wait_until,
)
from tests.fixtures.browser import DevTools
from tests.fixtures.service import LiveService, free_port, make_settings

pytestmark = pytest.mark.browser


def test_root_redirects_to_the_page_relatively(live_service: LiveService) -> None:
    answer = httpx.get(f"{live_service.url}/", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "ui/"
    answer = httpx.get(f"{live_service.url}/ui", follow_redirects=False)
    assert answer.headers["location"] == "ui/"
    page = httpx.get(f"{live_service.url}/", follow_redirects=True)
    assert page.status_code == 200 and "app.js" in page.text
    assert httpx.get(f"{live_service.url}/ui/vendor/chart.umd.min.js").status_code == 200
    paths = httpx.get(f"{live_service.url}/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith(("/v1", "/healthz", "/readyz"))]  # the pages are not API


def test_sweeps_list_and_sweep_page_of_a_finished_sweep(
    browser: DevTools, service_factory: Callable[..., LiveService], tmp_path: Path
) -> None:
    live_service = service_factory(public_read=True)  # alice may list bob's sweep too (the visibility model)
    done = finished_sweep(live_service, "alice", "paper-grid")
    queued = submit(live_service, "bob", "waiting")
    open_page(browser, f"{live_service.url}/ui/", token=live_service.tokens["alice"])
    wait_until(browser, "document.querySelectorAll('#sweeps tbody tr[data-id]').length === 2", what="two sweeps listed")
    assert text_of(browser, "#whoami") == "alice"
    trials = done["synthetic_trials"]
    diverged = sum(t["status"] == "DIVERGED" for t in trials)
    row = text_of(browser, f"#sweeps tr[data-id='{done['id']}']") or ""
    assert "paper-grid" in row and "alice" in row and "SUCCEEDED" in row, row
    assert f"{len(trials)} / {len(trials)}" in row and f"diverged {diverged}" in row, row
    assert "z_loss" in row or "mu_centering" in row or "mu_loss" in row  # best method so far
    screenshot(browser, tmp_path / "artifacts" / "sweeps-list.png")

    # Filters: by status, then by owner (the page asks the API, which filters).
    evaluate(browser, "document.querySelector('input[name=status][value=QUEUED]').click()")
    wait_until(browser, f"!document.querySelector(\"#sweeps tr[data-id='{done['id']}']\") && "
               f"!!document.querySelector(\"#sweeps tr[data-id='{queued['id']}']\")", what="only the queued sweep")
    evaluate(browser, "location.hash = '#/?owner=alice'")
    wait_until(browser, f"!!document.querySelector(\"#sweeps tr[data-id='{done['id']}']\") && "
               f"!document.querySelector(\"#sweeps tr[data-id='{queued['id']}']\")", what="only alice's sweep")

    click(browser, f"#sweeps tr[data-id='{done['id']}'] a")
    ready(browser)
    wait_until(browser, "Number(document.getElementById('curves').dataset.points) > 0", what="curves drawn")
    assert text_of(browser, "#sweep-name") == "paper-grid"
    assert int(evaluate(browser, "document.getElementById('curves').dataset.trials")) == len(trials)
    assert int(evaluate(browser, "document.getElementById('lrs').dataset.series")) >= 3
    # Every finished run is a dot at the loss the tables count (its test CE where measured), not its val CE.
    dots = evaluate(browser, "Chart.getChart(document.getElementById('lrs')).data.datasets"
                             ".filter(d => !d.family && !d.label.endsWith(' diverged'))"
                             ".flatMap(d => d.data.map(p => p.y))")
    measured = [t["test_ce"] for t in trials if t["status"] == "TERMINATED"]
    assert sorted(round(y, 9) for y in dots) == sorted(round(y, 9) for y in measured)
    assert int(evaluate(browser, "document.getElementById('importance').dataset.params")) >= 2
    assert int(evaluate(browser, "document.getElementById('parallel').dataset.lines")) == len(trials)
    mech = evaluate(
        browser,
        "[...document.querySelectorAll('#mechanism canvas')].map(c => [c.dataset.metric, Number(c.dataset.points)])",
    )
    assert [m for m, _ in mech] == ["mu_norm", "logits_mean", "logits_absmax", "log_z_mean"]
    assert all(n == len(trials) for _, n in mech), mech
    # λ robustness: z-loss's coefficient grid, one line per learning rate, every seed a dot, CI bands.
    lam = evaluate(browser, "(() => { const c = document.querySelector(\"#lambda canvas[data-method='z_loss']\"); "
                            "return c && [c.dataset.lines, c.dataset.points, c.dataset.bands].map(Number); })()")
    z_runs = [t for t in trials if t["method"] == "z_loss" and t["status"] in ("TERMINATED", "DIVERGED")]
    seeds_at = {(t["lr"], t["z_loss_weight"]): 0 for t in z_runs}
    for t in z_runs:
        seeds_at[(t["lr"], t["z_loss_weight"])] += 1
    banded = {lr for lr in {t["lr"] for t in z_runs} if sum(n >= 2 for (x, _), n in seeds_at.items() if x == lr) >= 2}
    assert lam == [len({t["lr"] for t in z_runs}), len(z_runs), len(banded)], lam
    # The trial table shows each finished trial's test CE with its standard error, and its stage.
    test_ce = column(browser, "test_ce")
    assert any("±" in v for v in test_ce) and "–" in test_ce, test_ce  # a diverged trial has none
    # The downstream section: one row per evaluated trial, and z-loss's per-seed gain over the baseline.
    evaluated = [t for t in trials if t.get("eval_status") == "DONE"]
    assert len(evaluated) == 4
    assert int(evaluate(browser, "document.querySelectorAll('#downstream-table tbody tr').length")) == len(evaluated)
    gain = text_of(browser, "#downstream-paired tbody tr") or ""
    assert TASK in gain and "z_loss" in gain and "+0.0500" in gain, gain
    # Downloads are offered for every format; cancel is not (the sweep has ended).
    labels = evaluate(browser, "[...document.querySelectorAll('[data-download]')].map(b => b.dataset.download)")
    assert labels == ["report.html", "report.md", "report.json", "best-config.yaml", "best-config.json", "trials.csv",
                      "trials.parquet"]
    assert evaluate(browser, "!document.getElementById('cancel')")
    # The trial table sorts by a clicked column, both ways.
    click(browser, "#trials th[data-key=final_val_loss]")
    values = [float(v) for v in column(browser, "final_val_loss")]
    assert values == sorted(values) and values[0] < values[-1]
    click(browser, "#trials th[data-key=final_val_loss]")
    values = [float(v) for v in column(browser, "final_val_loss")]
    assert values == sorted(values, reverse=True)
    screenshot(browser, tmp_path / "artifacts" / "sweep-page.png")
    assert allowed_errors(browser) == []


def _editor_set(tools: DevTools, find: str, replace: str) -> None:
    evaluate(tools, f"(() => {{ const t = document.getElementById('spec'); const before = t.value; "
                    f"t.value = t.value.replace({json.dumps(find)}, {json.dumps(replace)}); "
                    f"if (t.value === before) throw new Error('nothing replaced'); }})()")


def test_submit_from_a_preset_shows_the_apis_errors_beside_the_field(
    browser: DevTools, live_service: LiveService, tmp_path: Path
) -> None:
    open_page(browser, f"{live_service.url}/ui/#/submit", token=live_service.tokens["alice"])
    ready(browser)
    presets = evaluate(browser, "[...document.querySelectorAll('#preset option')].map(o => o.value)")
    assert "demo" in presets
    evaluate(browser, "const s = document.getElementById('preset'); s.value = 'demo'; "
                      "s.dispatchEvent(new Event('change'))")
    wait_until(browser, "document.getElementById('spec').value.includes('name: demo')", what="the demo preset's YAML")
    yaml_text = evaluate(browser, "document.getElementById('spec').value")
    steps_line = next(i for i, line in enumerate(yaml_text.splitlines()) if line.strip().startswith("steps:")) + 1

    # A bad field: the service's 422 names budget.steps, and the page puts the message beside that line.
    _editor_set(browser, "  steps: ", "  steps: -5 #")
    click(browser, "#submit")
    error = wait_until(browser, "(() => { const e = document.querySelector('.field-error'); "
                       "return e && {field: e.dataset.field, line: Number(e.dataset.line), text: e.innerText}; })()",
                       what="a field error")
    assert error["field"] == "body.budget.steps" and error["line"] == steps_line, error
    assert "greater than" in error["text"] or "steps" in error["text"], error
    assert "422" in (text_of(browser, "#submit-status") or "")
    screenshot(browser, tmp_path / "artifacts" / "submit-error.png", full_page=False)

    # YAML that does not parse is caught in the page, at its line.
    evaluate(browser, "document.getElementById('spec').value = 'name: x\\nbudget: {steps: [\\n'")
    click(browser, "#submit")
    wait_until(browser, "!!document.querySelector('.field-error[data-field=yaml]')", what="a YAML syntax error")

    # Fixed: the sweep is created and the page lands on it.
    evaluate(browser, f"document.getElementById('spec').value = {json.dumps(yaml_text)}")
    _editor_set(browser, "name: demo", "name: from-the-form")
    click(browser, "#submit")
    landed = "location.hash.startsWith('#/sweeps/') && decodeURIComponent(location.hash.slice(9))"
    sweep_id = wait_until(browser, landed, what="landed on the new sweep's page")
    ready(browser)
    assert text_of(browser, "#sweep-name") == "from-the-form"
    with live_service.client("alice") as c:
        created = c.get(f"/v1/sweeps/{sweep_id}").json()
    assert created["name"] == "from-the-form" and created["owner"] == "alice"
    assert allowed_errors(browser, 422) == []


def test_cancel_button_for_the_owner_and_none_for_others(
    browser: DevTools, service_factory: Callable[..., LiveService], tmp_path: Path
) -> None:
    live_service = service_factory(public_read=True)
    sweep = submit(live_service, "alice", "to-cancel")
    # bob may read it (public reads) but not cancel it: no button; a forced request gets the API's 403, shown.
    open_page(browser, f"{live_service.url}/ui/#/sweeps/{sweep['id']}", token=live_service.tokens["bob"])
    ready(browser)
    assert text_of(browser, "#sweep-name") == "to-cancel"
    assert evaluate(browser, "!document.getElementById('cancel')")
    evaluate(browser, "window.lossweepUI.cancel()", await_promise=True)
    message = wait_until(browser, "document.getElementById('page-error').innerText", what="the 403 shown")
    assert message.startswith("403") and "only its owner or an admin" in message
    assert allowed_errors(browser, 403) == []

    # alice owns it: the button is there; two clicks (arm, confirm) cancel it and the page says CANCELLED.
    open_page(browser, f"{live_service.url}/ui/#/sweeps/{sweep['id']}", token=live_service.tokens["alice"])
    wait_until(browser, "!!document.getElementById('cancel')", what="a cancel button")
    click(browser, "#cancel")
    click(browser, "#cancel")
    wait_until(browser, "document.querySelector('#sweep-head .badge').dataset.status === 'CANCELLED'", what="CANCELLED")
    assert evaluate(browser, "!document.getElementById('cancel')")
    screenshot(browser, tmp_path / "artifacts" / "cancelled.png", full_page=False)
    assert allowed_errors(browser) == []


def test_public_read_without_a_token_is_read_only(
    browser: DevTools, service_factory: Callable[..., LiveService]
) -> None:
    live = service_factory(public_read=True, grafana_url="http://grafana.example:3000")
    sweep = submit(live, "alice", "public")
    open_page(browser, f"{live.url}/ui/")
    wait_until(browser, f"!!document.querySelector(\"#sweeps tr[data-id='{sweep['id']}']\")", what="the sweep listed")
    assert text_of(browser, "#whoami") == "read-only"
    assert evaluate(browser, "document.getElementById('nav-submit').hidden")
    evaluate(browser, f"location.hash = '#/sweeps/{sweep['id']}'")
    ready(browser)
    assert evaluate(browser, "!document.getElementById('cancel')")
    grafana = evaluate(browser, "document.getElementById('link-grafana').href")
    assert grafana == f"http://grafana.example:3000/d/lossweep/lossweep?var-sweep={sweep['id']}"
    assert allowed_errors(browser) == []


def test_without_public_read_the_page_asks_for_a_token(browser: DevTools, live_service: LiveService) -> None:
    open_page(browser, f"{live_service.url}/ui/")
    wait_until(browser, "!!document.getElementById('need-token')", what="the token notice")
    evaluate(browser, f"document.getElementById('token-input').value = {json.dumps(live_service.tokens['root'])}")
    click(browser, "#token-use")
    wait_until(browser, "document.getElementById('whoami').innerText === 'root (admin)'", what="signed in")
    wait_until(browser, "!!document.getElementById('sweeps')", what="the list")
    assert evaluate(browser, "sessionStorage.getItem('lossweep.token')") == live_service.tokens["root"]
    assert allowed_errors(browser, 401) == []


def test_the_page_works_behind_a_path_prefix(browser: DevTools, tmp_path: Path) -> None:
    """A proxy serving the service under /lossweep/ (here: the app mounted there, as Starlette does for a
    root_path): the page, its assets and its API calls all resolve under the prefix."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from service.app import create_app
    from tests.fixtures.service import LiveService as Live

    app = create_app(make_settings(tmp_path / "home"), run_monitor=False)
    outer = Starlette(routes=[Mount("/lossweep", app=app)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(outer, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        live = Live(url=f"http://127.0.0.1:{port}/lossweep", app=app, settings=None)
        live.add_token("alice")
        sweep = submit(live, "alice", "prefixed")
        assert httpx.get(f"{live.url}/", follow_redirects=True).url.path == "/lossweep/ui/"
        open_page(browser, f"{live.url}/ui/", token=live.tokens["alice"])
        listed = f"!!document.querySelector(\"#sweeps tr[data-id='{sweep['id']}']\")"
        wait_until(browser, listed, what="listed via the prefix")
        assert allowed_errors(browser) == []
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_serve_prints_the_page_url(tmp_path: Path) -> None:
    from tests.fixtures.service import ServiceProcess, unreachable_ray

    log = tmp_path / "serve.log"
    env = {"LOSSWEEP_HOME": str(tmp_path / "home"), "LOSSWEEP_RAY_ADDRESS": unreachable_ray()}
    proc = ServiceProcess(env, log_path=log).start()
    try:
        lines = [line for line in log.read_text().splitlines() if line.startswith("web page: ")]
        assert lines == [f"web page: {proc.url}/ui/"], log.read_text()
        page = httpx.get(lines[0].removeprefix("web page: "))
        assert page.status_code == 200 and "app.js" in page.text
    finally:
        proc.stop()


def test_the_page_of_a_sweep_over_model_sizes(
    browser: DevTools, service_factory: Callable[..., LiveService], tmp_path: Path
) -> None:
    from tests.search_spaces.test_sizes import SIZES, two_size_rows

    live_service = service_factory()
    done = finished_sweep(live_service, "alice", "two-sizes", rows=two_size_rows())
    open_page(browser, f"{live_service.url}/ui/#/sweeps/{done['id']}", token=live_service.tokens["alice"])
    ready(browser)
    wait_until(browser, "Number(document.getElementById('lrs').dataset.series) > 0", what="LR plot drawn")
    # The trial table has a size column; the LR plot has the runs of each size and method apart.
    assert sorted(set(column(browser, "model"))) == SIZES
    labels = evaluate(browser, "Chart.getChart(document.getElementById('lrs')).data.datasets"
                               ".filter(d => !d.family && !d.label.endsWith(' diverged')).map(d => d.label)")
    assert sorted(labels) == sorted(f"{s} · {m}" for s in SIZES for m in ("baseline", "z_loss")), labels
    # Across model sizes: a row per size and method, with the paper's LRS at that size beside ours.
    rows = evaluate(browser, "[...document.querySelectorAll('#sizes-table tbody tr')].map(r => "
                             "[r.dataset.size, ...[...r.children].map(c => c.innerText)])")
    assert [(r[0], r[2]) for r in rows] == [(s, m) for s in SIZES for m in ("baseline", "z_loss")], rows
    assert all(r[5] != "–" for r in rows), rows  # the paper's LRS at 16M and 29M
    screenshot(browser, tmp_path / "artifacts" / "sweep-over-sizes.png")
    assert allowed_errors(browser) == []
