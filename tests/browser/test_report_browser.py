"""report.html in a real headless Chromium: it loads without console errors and its plots render at a
non-trivial size (screenshots of each figure are not blank). Skips when no Chromium is installed."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

from search_spaces.reports.render import render
from tests.fixtures.browser import DevTools
from tests.search_spaces.synthetic_sweep import paper_grid_trials, trial, write_sweep

pytestmark = pytest.mark.browser


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
    paths = render(str(sweep), links={"trials.csv": "trials.csv"})
    expected = len(json.loads(Path(paths["json"]).read_text())["plots"])
    # 7 of the best-config report, a λ plot beside each of the two λ heat maps, importance and the mechanism
    assert expected == 11
    _check_page(browser, Path(paths["html"]), expected)


def test_report_of_a_sweep_with_only_diverged_trials_renders(browser: DevTools, tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "diverged",
        [trial("d1", "baseline", 0.3, 0.0, status="DIVERGED"), trial("d2", "baseline", 1.0, 0.0, status="DIVERGED")],
    )
    paths = render(str(sweep))
    _check_page(browser, Path(paths["html"]), len(json.loads(Path(paths["json"]).read_text())["plots"]))


@pytest.mark.ray
def test_report_of_a_real_tiny_sweep_renders_in_chromium(browser: DevTools, request: pytest.FixtureRequest) -> None:
    try:
        sweep_dir = Path(request.getfixturevalue("tiny_sweep_dir"))
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_sweep_dir fixture is not available")
    paths = render(str(sweep_dir))
    plots = json.loads(Path(paths["json"]).read_text())["plots"]
    assert plots, "a finished tiny sweep has at least its training curves"
    _check_page(browser, Path(paths["html"]), len(plots))
