"""report.html in a real headless Chromium: it loads without console errors and its plots render at a
non-trivial size (screenshots of each figure are not blank). Skips when no Chromium is installed."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from search_spaces import report
from tests.search_spaces.synthetic_sweep import paper_grid_trials, trial, write_sweep

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=30)
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)
            if message.get("method") == event:
                return message

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(str(params["entry"].get("text")))
        return out

    def close(self) -> None:
        self._ws.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    log = (tmp_path / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    tools: DevTools | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None:
                pytest.fail(
                    f"chromium exited with {proc.returncode}: {(tmp_path / 'chromium.log').read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail("chromium did not open its DevTools port within 60 s")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t.get("type") == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        yield tools
    finally:
        if tools is not None:
            tools.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _open(tools: DevTools, html: Path) -> None:
    tools.events.clear()
    tools.call("Page.navigate", url=html.resolve().as_uri())
    tools.wait_for("Page.loadEventFired")


def _figure_boxes(tools: DevTools) -> list[dict[str, float]]:
    script = """JSON.stringify([...document.querySelectorAll('figure svg')].map(s => {
        const r = s.getBoundingClientRect();
        return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height,
                title: (s.querySelector('title') || {}).textContent || '',
                caption: (s.closest('figure').querySelector('figcaption') || {}).textContent || ''};
    }))"""
    result = tools.call("Runtime.evaluate", expression=script, returnByValue=True)
    return json.loads(result["result"]["value"])


def _screenshot(tools: DevTools, box: dict[str, float]) -> Any:
    from matplotlib import image

    clip = {k: box[k] for k in ("x", "y", "width", "height")} | {"scale": 1}
    shot = tools.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
    return image.imread(io.BytesIO(base64.b64decode(shot["data"])), format="png")


def _ink(pixels: Any) -> tuple[float, int]:
    """Share of pixels that are not (near) white, and the number of distinct colours."""
    rgb = (pixels[..., :3] * 255).round().astype("uint8")
    not_white = (rgb.min(axis=-1) < 235).mean()
    colours = len({tuple(c) for c in rgb.reshape(-1, 3)[:: max(1, rgb.shape[0] * rgb.shape[1] // 20000)]})
    return float(not_white), colours


def _check_page(tools: DevTools, html: Path, expected_figures: int) -> None:
    _open(tools, html)
    # The probe proves console errors are captured at all, so "no errors" below means something.
    tools.call("Runtime.evaluate", expression="console.error('lossweep-probe')")
    tools.call("Runtime.evaluate", expression="1")
    errors = tools.errors()
    assert "lossweep-probe" in errors
    assert [e for e in errors if e != "lossweep-probe"] == []
    boxes = _figure_boxes(tools)
    assert len(boxes) == expected_figures
    for box in boxes:
        assert box["width"] >= 300 and box["height"] >= 150, box
        assert len(box["title"]) > 20 and len(box["caption"]) > 20, box
        ink, colours = _ink(_screenshot(tools, box))
        assert ink > 0.01, (box["title"], ink)  # a blank figure has none; a sparse chart ~2 %
        assert colours >= 4, (box["title"], colours)


def test_report_of_a_paper_grid_sweep_renders_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "paper-grid", paper_grid_trials(seeds=(0,)))
    paths = report.render(str(sweep), links={"trials.csv": "trials.csv"})
    expected = len(json.loads(Path(paths["json"]).read_text())["plots"])
    assert expected == 7
    _check_page(browser, Path(paths["html"]), expected)


def test_report_of_a_sweep_with_only_diverged_trials_renders(browser: DevTools, tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "diverged",
        [trial("d1", "baseline", 0.3, 0.0, status="DIVERGED"), trial("d2", "baseline", 1.0, 0.0, status="DIVERGED")],
    )
    paths = report.render(str(sweep))
    _check_page(browser, Path(paths["html"]), len(json.loads(Path(paths["json"]).read_text())["plots"]))


@pytest.mark.ray
def test_report_of_a_real_tiny_sweep_renders_in_chromium(browser: DevTools, request: pytest.FixtureRequest) -> None:
    try:
        sweep_dir = Path(request.getfixturevalue("tiny_sweep_dir"))
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_sweep_dir fixture is not available")
    paths = report.render(str(sweep_dir))
    plots = json.loads(Path(paths["json"]).read_text())["plots"]
    assert plots, "a finished tiny sweep has at least its training curves"
    _check_page(browser, Path(paths["html"]), len(plots))
