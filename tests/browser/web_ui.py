"""Helpers for the web page tests: open a page of a live service in Chromium, wait for what it shows, read
values from the DOM, save screenshots, and give a service a finished sweep with synthetic results."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fixtures.browser import DevTools
from tests.fixtures.service import LiveService
from tests.search_spaces.synthetic_sweep import paper_grid_trials, trial, write_sweep

# Chromium logs every 4xx/5xx answer to fetch() as a console error; a test that provokes one on purpose
# allows exactly that status and nothing else.
NETWORK_ERROR = "Failed to load resource: the server responded with a status of {status}"
#: The downstream task of the synthetic finished sweep's evaluated trials.
TASK = "lossweep_next_line"


def evaluate(tools: DevTools, expression: str, *, await_promise: bool = False) -> Any:
    result = tools.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
    if "exceptionDetails" in result:
        raise AssertionError(f"{expression}: {result['exceptionDetails']}")
    return result["result"].get("value")


def open_page(tools: DevTools, url: str, *, token: str | None = None) -> None:
    """Opens ``url``; with ``token``, as if the user had pasted it (it is in sessionStorage before any script
    of the page runs), without one as a fresh visitor."""
    for script in getattr(tools, "_token_scripts", []):
        tools.call("Page.removeScriptToEvaluateOnNewDocument", identifier=script)
    value = f"sessionStorage.setItem('lossweep.token', {json.dumps(token)})" if token else "sessionStorage.clear()"
    added = tools.call("Page.addScriptToEvaluateOnNewDocument", source=value)
    tools._token_scripts = [added["identifier"]]  # type: ignore[attr-defined]
    tools.events.clear()
    tools.call("Page.navigate", url="about:blank")  # so that a URL differing only in its #hash loads anew
    tools.wait_for("Page.loadEventFired")
    tools.events.clear()
    tools.call("Page.navigate", url=url)
    tools.wait_for("Page.loadEventFired")


def wait_until(tools: DevTools, expression: str, *, timeout: float = 60.0, what: str = "") -> Any:
    """Polls a JavaScript expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        try:
            value = evaluate(tools, expression)
        except AssertionError:  # the page is not there yet
            value = None
        if value:
            return value
        time.sleep(0.25)
    errors = tools.errors()
    text = evaluate(tools, "document.getElementById('view') && document.getElementById('view').innerText")
    raise AssertionError(
        f"never true: {what or expression} (last {value!r}); console errors {errors}; page: {text!r:.1500}"
    )


def ready(tools: DevTools, what: str = "page ready") -> None:
    """Waits until the page has drawn its view from the API's first answers."""
    wait_until(tools, "document.getElementById('view').dataset.ready === '1'", what=what)


def column(tools: DevTools, key: str) -> list[str]:
    """The trial table's cells of one column, top to bottom."""
    return evaluate(  # type: ignore[no-any-return]
        tools,
        f"(() => {{ const i = [...document.querySelectorAll('#trials th')].findIndex(h => h.dataset.key === "
        f"{json.dumps(key)}); return [...document.querySelectorAll('#trials tbody tr')]"
        ".map(r => r.children[i].innerText); })()",
    )


def text_of(tools: DevTools, selector: str) -> str | None:
    return evaluate(tools, f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText ?? null")


def click(tools: DevTools, selector: str) -> None:
    assert evaluate(tools, f"!!document.querySelector({json.dumps(selector)})"), f"no {selector} to click"
    evaluate(tools, f"document.querySelector({json.dumps(selector)}).click()")


def screenshot(tools: DevTools, path: Path, *, full_page: bool = True) -> Path:
    """A PNG of the page (the whole scrollable page by default), saved as a test artefact."""
    params: dict[str, Any] = {"format": "png"}
    if full_page:
        size = evaluate(tools, "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        clip = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        params.update(captureBeyondViewport=True, clip=clip)
    shot = tools.call("Page.captureScreenshot", **params)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def allowed_errors(tools: DevTools, *statuses: int) -> list[str]:
    """Console errors other than the network log of the answers with ``statuses`` a test provoked."""
    expected = [NETWORK_ERROR.format(status=s) for s in statuses]
    return [e for e in tools.errors() if not any(e.startswith(x) for x in expected)]


TINY_PRESET_OVERRIDES: dict[str, Any] = {
    "confirm": None,  # the demo confirms on fresh seeds; these tiny sweeps are the search alone
    "model.preset": "tiny",
    "methods": ["baseline"],
    "lr": [3e-3],
    "coefficients": {},
    "seeds": [0],
    "search.algorithm": "grid",
    "scheduler.name": "none",
    "budget.warmup_steps": 0,
    "data.seq_len": 32,
    "data.batch_size": 4,
    "data.eval_tokens": 32, "data.test_tokens": 64,
}


def submit(live: LiveService, user: str, name: str, **overrides: Any) -> dict[str, Any]:
    body = {"preset": "demo", "name": name, "overrides": TINY_PRESET_OVERRIDES | {"budget.steps": 10} | overrides}
    with live.client(user) as c:
        answer = c.post("/v1/sweeps", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def finished_sweep(
    live: LiveService, user: str, name: str, rows: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A sweep of ``user`` that has ended SUCCEEDED with a synthetic paper-grid result in its sweep dir (the
    LR grid, coefficients, a diverged baseline at the largest LR, logit statistics), or with ``rows``."""
    from search_spaces.run.sweep_dir import EVAL_STATUS_COLUMN, eval_column

    sweep = submit(live, user, name)
    if rows is not None:
        return _finish(live, sweep, rows, name)
    rows = [t for t in paper_grid_trials(seeds=(0, 1)) if t["method"] in ("baseline", "z_loss", "mu_centering")]
    rows.append(trial("extra-mu", "mu_loss", 1e-2, 2.1, mu_loss_weight=1e-4))
    for row in rows:  # a test CE on the finished trials; a downstream evaluation at lr 1e-2 (both seeds)
        if row["status"] == "TERMINATED":
            row.update(test_ce=row["final_val_loss"] + 0.01, test_ce_se=0.02, test_tokens=4096)
        if row["lr"] == 1e-2 and (row["method"] == "baseline" or row.get("z_loss_weight") == 1e-4):
            acc = 0.40 + (0.05 if row["method"] == "z_loss" else 0.0) + 0.01 * row["seed"]
            row.update({eval_column(TASK, "acc"): acc, eval_column(TASK, "acc_se"): 0.02,
                        eval_column(TASK, "n"): 500, EVAL_STATUS_COLUMN: "DONE"})  # fmt: skip
    return _finish(live, sweep, rows, name)


def _finish(live: LiveService, sweep: dict[str, Any], rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Writes ``rows`` as the sweep's results and marks it SUCCEEDED in the service's database."""
    from search_spaces.run.results import read_progress
    from service.db import session_scope
    from service.models import Sweep

    with session_scope(live.app.state.lossweep.sessions) as session:
        row = session.get(Sweep, sweep["id"])
        assert row is not None
        sweep_dir = row.sweep_dir  # the API shows server paths to admins only
    write_sweep(Path(sweep_dir), rows, name=name)
    now = datetime.now(UTC)
    with session_scope(live.app.state.lossweep.sessions) as session:
        row = session.get(Sweep, sweep["id"])
        assert row is not None
        row.status = "SUCCEEDED"
        row.message = "finished (synthetic results)"
        row.progress = read_progress(sweep_dir)
        row.num_trials = len(rows)
        row.started_at = row.submitted_at = now
        row.finished_at = now
    return sweep | {"synthetic_trials": rows}
