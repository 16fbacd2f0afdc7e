"""search_spaces.reports.report: the three formats, determinism, self-containment, edge cases, the CLI, and the
report of a real tiny sweep."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from search_spaces.reports.render import render
from search_spaces.spec.sweep_spec import SweepSpec
from tests.search_spaces.synthetic_sweep import paper_grid_trials, trial, write_sweep

LINKS = {"trials.csv": "/v1/sweeps/s1/trials.csv", "metrics.parquet": "/v1/sweeps/s1/metrics.parquet"}


@pytest.fixture(scope="module")
def paper_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("sweeps") / "paper-grid", paper_grid_trials(seeds=(0, 1)))


@pytest.fixture(scope="module")
def paper_report(paper_sweep: Path) -> dict[str, str]:
    return render(str(paper_sweep), links=LINKS)


class _Page(HTMLParser):
    """Collects what the self-containment checks need from report.html."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.figures: list[dict[str, object]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "figure":
            self.figures.append({"svg": 0, "title": "", "caption": "", "role": None})
        if self.figures and tag == "svg" and "figure" in self.stack:
            self.figures[-1]["svg"] = int(self.figures[-1]["svg"]) + 1
            self.figures[-1]["role"] = a.get("role")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop() == tag:
                break

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.append(str(a["id"]))

    def handle_data(self, data: str) -> None:
        if not self.figures or "figure" not in self.stack:
            return
        if self.stack[-1] == "title":
            self.figures[-1]["title"] = str(self.figures[-1]["title"]) + data
        if self.stack[-1] == "figcaption":
            self.figures[-1]["caption"] = str(self.figures[-1]["caption"]) + data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


# ---------------------------------------------------------------------------------------------------
# The full report
# ---------------------------------------------------------------------------------------------------


def test_render_writes_three_files_and_returns_their_paths(paper_sweep: Path, paper_report: dict[str, str]) -> None:
    assert set(paper_report) == {"json", "md", "html"}
    for fmt, path in paper_report.items():
        assert Path(path) == paper_sweep / f"report.{fmt}"
        assert Path(path).stat().st_size > 0
    assert not list(paper_sweep.glob(".report.*"))  # no temporary file left behind


def test_json_holds_every_section(paper_report: dict[str, str]) -> None:
    data = json.loads(Path(paper_report["json"]).read_text())
    assert data["schema"] == "lossweep.report/1"
    sweep = data["sweep"]
    assert sweep["status"] == "SUCCEEDED" and sweep["partial"] is False
    assert sweep["counts"]["DIVERGED"] == 2 + 4 and sweep["counts"]["TERMINATED"] == len(data["trials"]) - 6
    assert sweep["tokens"] > 0 and sweep["vocab_size"] == 256
    assert sweep["l0"] == pytest.approx(math.log(256))
    assert sweep["spec"]["methods"] and sweep["manifest"]["git_sha"] == "0123456789abcdef"
    assert sweep["resources"]["workers"] == 1
    best = data["best"]
    assert "diverge" in best["rule"]
    assert best["overall"]["method"] == "simreg" and best["overall"]["val_loss"] == pytest.approx(1.96)
    assert best["overall"]["step"] == 100
    # The YAML block is a sweep spec that re-runs exactly the best configuration.
    pinned = SweepSpec.model_validate(yaml.safe_load(best["overall"]["yaml"]))
    assert pinned.methods == ["simreg"] and pinned.lr == pytest.approx(3e-3) and pinned.seeds == [0]
    assert pinned.coefficients == {"simreg_weight": 0.1, "simreg_temperature": 0.1}
    assert pinned.data.seq_len == 32 and pinned.budget.steps == 100 and pinned.num_trials() == 1
    assert set(best["per_method"]) == {"baseline", "z_loss", "mu_loss", "mu_centering", "softcap", "simreg"}
    fams = {f["label"]: f for f in data["lr_sensitivity"]["families"]}
    # baseline: loss = 2 + 0.1 (log10 lr + 2.5)^2 (+0.01 for seed 1), diverged at 0.3 -> ln V; mean over 2 seeds.
    grid = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    by_lr = [2.0 + 0.1 * (math.log10(lr) + 2.5) ** 2 + 0.005 for lr in grid] + [math.log(256)]
    expected = sum(v - min(by_lr) for v in by_lr) / 6
    assert fams["baseline"]["lrs"] == pytest.approx(expected, abs=1e-9)
    assert fams["baseline"]["largest_stable_lr"] == pytest.approx(0.1)
    assert fams["z_loss (z_loss_weight=100)"]["largest_stable_lr"] == pytest.approx(3e-3)
    paper = data["lr_sensitivity"]["paper"]
    assert paper is not None and "2601.02031" in paper["citation"]
    assert {r["method"] for r in paper["rows"]} == {"baseline", "z_loss", "mu_loss", "mu_centering", "softcap"}
    assert set(data["lambda_robustness"]["heatmaps"]) == {"z_loss", "mu_loss", "simreg"}
    assert len(data["paired_deltas"]["rows"]) > 0
    assert {m["method"] for m in data["speedup"]["methods"]} == {
        "z_loss",
        "mu_loss",
        "mu_centering",
        "softcap",
        "simreg",
    }
    assert len(data["curves"]) == 6 and {"mu_norm", "logits_mean", "logits_absmax", "log_z_mean"} <= set(
        data["curves"][0]
    )
    assert len(data["trials"]) == len(paper_grid_trials())
    assert data["links"] == dict(sorted(LINKS.items()))
    names = [p["name"] for p in data["plots"]]
    assert names == [
        "lr-sensitivity",
        "heat-z_loss",
        "lambda-z_loss",
        "heat-mu_loss",
        "lambda-mu_loss",
        "heat-simreg",
        "val-curves",
        "diagnostics",
        "speedup",
        "importance",
        "mechanism-lr",
    ]
    assert all(p["caption"] and p["alt"] for p in data["plots"])
    assert data["missing"] == []


def test_html_is_self_contained_and_every_plot_has_caption_and_alt(paper_report: dict[str, str]) -> None:
    html = Path(paper_report["html"]).read_text()
    page = parse(html)
    tags = {t for t, _ in page.tags}
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    for _tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http://", "https://", "//")), (key, value)
    assert "@import" not in html and "url(http" not in html
    # every figure of report.json is on the page: 7 of the best-config report, a λ plot beside each of the
    # two λ heat maps, importance and the mechanism against the LR
    plots_listed = json.loads(Path(paper_report["json"]).read_text())["plots"]
    assert len(page.figures) == len(plots_listed) == 11
    for plot in plots_listed:
        assert f'id="fig-{plot["name"]}"' in html, plot["name"]
    for fig in page.figures:
        assert fig["svg"] == 1 and fig["role"] == "img"
        assert len(str(fig["title"]).strip()) > 20, fig  # alt text
        assert len(str(fig["caption"]).strip()) > 20, fig
    assert len(page.ids) == len(set(page.ids)), "element ids must be unique across the inline SVGs"
    assert "<details><summary>Sweep spec</summary>" in html and "Manifest" in html
    assert 'href="/v1/sweeps/s1/trials.csv"' in html
    for section in (
        "Best configuration",
        "Learning-rate sensitivity",
        "λ robustness",
        "Convergence speed-up",
        "Trials",
    ):
        assert section in html


def test_markdown_twin(paper_report: dict[str, str]) -> None:
    md = Path(paper_report["md"]).read_text()
    assert md.startswith("# synthetic — SUCCEEDED")
    for text in (
        "## Best configuration",
        "```yaml",
        "## Learning-rate sensitivity",
        "### Beside the paper",
        "## λ robustness",
        "## Convergence speed-up",
        "## Trials",
        "[trials.csv](/v1/sweeps/s1/trials.csv)",
    ):
        assert text in md, text


def test_render_is_deterministic(paper_sweep: Path, paper_report: dict[str, str]) -> None:
    first = {fmt: Path(p).read_bytes() for fmt, p in paper_report.items()}
    again = render(str(paper_sweep), links=LINKS)
    assert {fmt: Path(p).read_bytes() for fmt, p in again.items()} == first


def test_render_only_the_requested_formats_and_rejects_unknown(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "s", [trial("b", "baseline", 1e-3, 2.0)])
    assert set(render(str(sweep), formats=("json",))) == {"json"}
    assert not (sweep / "report.html").exists()
    with pytest.raises(ValueError, match="unknown 'pdf'"):
        render(str(sweep), formats=("pdf",))


# ---------------------------------------------------------------------------------------------------
# Edge cases render and say what is missing
# ---------------------------------------------------------------------------------------------------


def _render_all(directory: Path) -> tuple[dict, str, str]:
    paths = render(str(directory))
    return (
        json.loads(Path(paths["json"]).read_text()),
        Path(paths["md"]).read_text(),
        Path(paths["html"]).read_text(),
    )


def test_only_diverged_trials(tmp_path: Path) -> None:
    rows = [
        trial(f"d{i}", m, lr, 0.0, status="DIVERGED", **({"z_loss_weight": 1e-4} if m == "z_loss" else {}))
        for i, (m, lr) in enumerate([("baseline", 0.3), ("baseline", 1.0), ("z_loss", 0.3), ("z_loss", 1.0)])
    ]
    data, md, html = _render_all(write_sweep(tmp_path / "div", rows))
    assert data["best"]["overall"] is None
    assert any("no best configuration" in m for m in data["missing"])
    fams = data["lr_sensitivity"]["families"]
    assert fams[0]["lrs"] == pytest.approx(0.0) and fams[0]["largest_stable_lr"] is None
    assert "What is missing" in md and "What is missing" in html
    assert "lr-sensitivity" in [p["name"] for p in data["plots"]]


def test_one_method(tmp_path: Path) -> None:
    rows = [trial(f"m{lr:g}", "mu_centering", lr, 2.0 + lr) for lr in (1e-3, 1e-2, 1e-1)]
    data, _md, html = _render_all(write_sweep(tmp_path / "one", rows))
    assert list(data["best"]["per_method"]) == ["mu_centering"]
    assert data["lr_sensitivity"]["paper"] is None  # not the paper's grid
    assert data["speedup"]["baseline"] is None
    assert any("baseline" in m for m in data["missing"])
    assert "speedup" not in [p["name"] for p in data["plots"]]
    assert "Not available" in html


def test_running_sweep_is_partial(tmp_path: Path) -> None:
    rows = [
        trial("b1", "baseline", 1e-3, 2.3),
        trial("b2", "baseline", 1e-2, 2.1, status="RUNNING", steps=40),
        trial("b3", "baseline", 1e-1, 2.6, status="PENDING", steps=0),
    ]
    rows[2]["tokens"] = 0
    data, md, html = _render_all(write_sweep(tmp_path / "run", rows, status="RUNNING", total_trials=6))
    assert data["sweep"]["status"] == "RUNNING" and data["sweep"]["partial"] is True
    assert data["sweep"]["total_trials"] == 6
    assert any("still running" in m for m in data["missing"])
    assert data["best"]["overall"]["trial_id"] == "b2" and data["best"]["overall"]["status"] == "RUNNING"
    assert "partial" in html and "(partial)" in md
    fam = data["lr_sensitivity"]["families"][0]
    assert fam["K"] == 1 and fam["lrs"] is None and "not finished" in fam["note"]


def test_searched_coefficients_give_scatter_plots_not_heat_maps(tmp_path: Path) -> None:
    # A TPE-like sweep: every SimReg trial has its own weight, temperature and LR.
    rows = [
        trial(
            f"t{i}",
            "simreg",
            10 ** (-3 + i / 4),
            2.0 + abs(i - 4) / 20,
            simreg_weight=10 ** (-3 + i / 3),
            simreg_temperature=10 ** (-1.5 + i / 6),
        )
        for i in range(9)
    ]
    rows.append(trial("b", "baseline", 1e-3, 2.2))
    data, _md, html = _render_all(write_sweep(tmp_path / "tpe", rows))
    assert data["lambda_robustness"]["heatmaps"]["simreg"]["kind"] == "scatter"
    assert [p["name"] for p in data["plots"]][:2] == ["lr-sensitivity", "heat-simreg"]
    assert "searched, 9 trials" in html  # the legend (matplotlib keeps each text as an SVG comment)
    assert "SimReg: 9 configurations with fewer than two finished learning rates" in html


def test_cancelled_sweep_is_final_and_names_its_unfinished_trials(tmp_path: Path) -> None:
    rows = [trial("b1", "baseline", 1e-3, 2.3), trial("b2", "baseline", 1e-2, 2.1, status="RUNNING", steps=40)]
    data, _md, html = _render_all(write_sweep(tmp_path / "cancelled", rows, status="CANCELLED"))
    assert data["sweep"]["status"] == "CANCELLED" and data["sweep"]["partial"] is False
    assert any("ended (CANCELLED) with 1 trial" in m for m in data["missing"])
    assert "CANCELLED" in html and "partial" not in html.split("</h1>")[0]


def test_invalid_spec_is_reported_not_fatal(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "badspec", [trial("b", "baseline", 1e-3, 2.0)])
    (sweep / "spec.yaml").write_text("methods: [not_a_method]\n")
    data, _md, _html = _render_all(sweep)
    assert data["sweep"]["spec"] is None
    assert any("spec.yaml is not a valid sweep spec" in m for m in data["missing"])


def test_empty_sweep(tmp_path: Path) -> None:
    data, md, html = _render_all(write_sweep(tmp_path / "empty", [], status="RUNNING", total_trials=4))
    assert data["trials"] == [] and data["plots"] == []
    assert any("no trials" in m for m in data["missing"])
    assert "No trials yet" in html and "No trials yet" in md


def test_sweep_that_just_started_has_no_parquet_files_yet(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "fresh", [], status="RUNNING", total_trials=4)
    (sweep / "trials.parquet").unlink()
    (sweep / "metrics.parquet").unlink()
    data, _md, html = _render_all(sweep)
    assert data["sweep"]["status"] == "RUNNING" and data["trials"] == []
    assert "RUNNING · partial" in html


# ---------------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------------


def test_cli_report_and_analyze(tmp_path: Path) -> None:
    from lossweep.cli.main import app

    sweep = write_sweep(tmp_path / "cli", paper_grid_trials(seeds=(0,)))
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "report", str(sweep), "--format", "json,md"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(sweep / "report.json"), str(sweep / "report.md")]
    result = runner.invoke(app, ["sweep", "analyze", str(sweep), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["best"]["overall"]["method"] == "simreg" and out["counts"]["DIVERGED"] == 5
    result = runner.invoke(app, ["sweep", "analyze", str(sweep)])
    assert result.exit_code == 0, result.output
    assert "Learning-rate sensitivity" in result.output and "Best configuration" in result.output
    bad = runner.invoke(app, ["sweep", "report", str(tmp_path / "absent")])
    assert bad.exit_code == 2 and "not a directory" in _plain(bad.output)
    bad = runner.invoke(app, ["sweep", "report", str(sweep), "--format", "pdf"])
    assert bad.exit_code == 2 and "unknown format 'pdf'" in _plain(bad.output)


def _plain(output: str) -> str:
    """The text of a rich error box, without its frame and line breaks."""
    return " ".join(output.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


# ---------------------------------------------------------------------------------------------------
# A real tiny sweep (the sweep fixture runs it once per session)
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_report(request: pytest.FixtureRequest) -> tuple[Path, dict[str, str]]:
    try:
        sweep_dir = Path(request.getfixturevalue("tiny_sweep_dir"))
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_sweep_dir fixture is not available")
    return sweep_dir, render(str(sweep_dir))


@pytest.mark.ray
def test_report_of_a_real_tiny_sweep(tiny_report: tuple[Path, dict[str, str]]) -> None:
    sweep_dir, paths = tiny_report
    data = json.loads(Path(paths["json"]).read_text())
    assert data["sweep"]["trials"] > 0 and data["sweep"]["manifest"] is not None
    assert data["sweep"]["spec"] is not None
    counts = data["sweep"]["counts"]
    assert sum(counts.values()) == data["sweep"]["trials"]
    assert data["best"]["overall"] is not None or data["missing"]
    assert data["curves"], "the best trials' validation curves come from metrics.parquet"
    names = [p["name"] for p in data["plots"]]
    assert "val-curves" in names and "diagnostics" in names
    page = parse(Path(paths["html"]).read_text())
    assert len(page.figures) == len(data["plots"])
    again = render(str(sweep_dir))
    assert Path(again["html"]).read_bytes() == Path(paths["html"]).read_bytes()


def test_seed_speedup_text_gives_mean_spread_and_count() -> None:
    from search_spaces.reports.report_text import seed_speedup_text

    two = [{"seed": 0, "speedup": 2.0}, {"seed": 1, "speedup": 1.2}, {"seed": 2, "speedup": None}]
    assert seed_speedup_text({"per_seed": two, "seeds_reached": 2, "speedup_mean": 1.6, "speedup_std": 0.566}) == (
        "1.60x ± 0.57 (2 of 3 seeds)"
    )
    assert seed_speedup_text({"per_seed": two[:1], "seeds_reached": 1, "speedup_mean": 2.0}) == "–"
    none = [{"seed": 0, "speedup": None}, {"seed": 1, "speedup": None}]
    assert seed_speedup_text({"per_seed": none, "seeds_reached": 0, "speedup_mean": None}) == (
        "not reached on any of 2 seeds"
    )


def test_trial_table_shows_the_above_l0_flag_beside_a_divergence() -> None:
    from search_spaces.reports.report_text import stop_text

    assert stop_text({"status": "TERMINATED", "above_l0_step": 50}) == "above L0 at step 50"
    assert stop_text({"status": "TERMINATED", "above_l0_step": -1}) == ""
    assert stop_text({"status": "TERMINATED", "above_l0_step": None}) == ""  # sweeps written before the flag
    assert stop_text({"status": "TERMINATED", "above_l0_step": float("nan")}) == ""
    both = {"status": "DIVERGED", "diverged_step": 80, "diverged_cause": "nonfinite_loss", "above_l0_step": 50}
    assert stop_text(both) == "80 (nonfinite_loss); above L0 at step 50"


@pytest.mark.parametrize(
    "description",
    [
        "ok\n```\n<img src=x onerror=alert(1)>\n",
        "````\n<img src=x onerror=alert(1)>\n````",
        "``` yaml\n# <script>alert(1)</script>\n~~~\n",
        "`" * 40 + "\n<img src=x onerror=alert(1)>",
    ],
)
def test_a_hostile_description_cannot_leave_the_spec_block(tmp_path: Path, description: str) -> None:
    """A CommonMark renderer that allows raw HTML (as some Markdown viewers do) shows the spec, the
    description included, as code: no tag of it comes out as HTML."""
    from markdown_it import MarkdownIt

    spec = SweepSpec(name="hostile", description=description, budget={"steps": 10}).model_dump(mode="json")
    _data, md, _html = _render_all(write_sweep(tmp_path / "s", [trial("b", "baseline", 1e-3, 2.0)], spec=spec))
    rendered = MarkdownIt("commonmark", {"html": True}).render(md)
    assert "<img" not in rendered and "<script" not in rendered, rendered
    assert "&lt;img" in rendered or "&lt;script" in rendered  # shown, as text


def _confirm_sweep_trials() -> list[dict]:
    """A search over two learning rates on seeds 0-1, then each method's best re-run on seeds 10-13."""
    rows = []
    for seed in (0, 1):
        for lr in (1e-3, 1e-2):
            rows.append(trial(f"b{lr:g}-{seed}", "baseline", lr, 2.0 + (lr == 1e-3) * 0.1 + 0.01 * seed, seed=seed))
            rows.append(trial(f"m{lr:g}-{seed}", "mu_centering", lr, 1.95 + (lr == 1e-3) * 0.1 + 0.01 * seed,
                              seed=seed))  # fmt: skip
    for row in rows:
        row["stage"] = "search"
    for seed, noise in zip((10, 11, 12, 13), (0.0, 0.02, -0.01, 0.015), strict=True):
        rows.append(trial(f"cb-{seed}", "baseline", 1e-2, 2.0 + noise, seed=seed) | {"stage": "confirm"})
        rows.append(trial(f"cm-{seed}", "mu_centering", 1e-2, 1.9 + noise * 1.5, seed=seed) | {"stage": "confirm"})
    return rows


def test_confirm_stage_gives_the_verdicts_and_the_intervals(tmp_path: Path) -> None:
    spec = {"name": "confirmed", "budget": {"steps": 100, "eval_interval": 20}, "lr": [1e-3, 1e-2],
            "methods": ["baseline", "mu_centering"], "seeds": [0, 1],
            "confirm": {"seeds": [10, 11, 12, 13]}}  # fmt: skip
    sweep = write_sweep(tmp_path / "confirmed", _confirm_sweep_trials(), spec=spec)
    paths = render(str(sweep))
    data = json.loads(Path(paths["json"]).read_text())
    table = data["confirm"]
    assert [c["method"] for c in table["configs"]] == ["baseline", "mu_centering"]
    base, mu = table["configs"]
    assert base["comparison"] is None and base["n"] == 4 and base["low"] < base["mean"] < base["high"]
    cmp = mu["comparison"]
    assert cmp["n"] == 4 and cmp["mean"] == pytest.approx(-0.1 + 0.5 * (0.0 + 0.02 - 0.01 + 0.015) / 4)
    assert cmp["high"] < 0 and cmp["verdict"] == "better" and cmp["mde"] > 0
    assert table["best"]["method"] == "mu_centering" and table["best"]["n"] == 4
    # The search tables use the search trials only: two seeds per cell, never the confirm seeds.
    family = data["lr_sensitivity"]["families"][0]
    assert {c["n"] for c in family["cells"]} == {2}
    assert family["lrs_low"] is not None
    assert all(d["n_pairs"] == 2 for d in data["paired_deltas"]["rows"])
    md = Path(paths["md"]).read_text()
    assert "## Confirmed on fresh seeds" in md and "better" in md
    html = Path(paths["html"]).read_text()
    assert 'id="fig-confirm"' in html and 'class="verdict better"' in html


def test_the_trial_table_shows_the_test_ce_with_its_standard_error(tmp_path: Path) -> None:
    measured = trial("t", "baseline", 1e-3, 2.0) | {"test_ce": 2.15971, "test_ce_se": 0.00861}
    unmeasured = trial("u", "baseline", 1e-2, 2.1)
    data, md, html = _render_all(write_sweep(tmp_path / "s", [measured, unmeasured]))
    row = next(t for t in data["trials"] if t["trial_id"] == "t")
    assert (row["test_ce"], row["test_ce_se"]) == (pytest.approx(2.15971), pytest.approx(0.00861))
    assert "test CE ± SE" in md and "2.1597 ± 0.0086" in md
    assert "2.1597 ± 0.0086" in html


def test_lambda_plot_draws_every_seed_and_an_interval_per_cell() -> None:
    from search_spaces.reports import plots

    def cell(lr: float, base: float) -> dict[str, object]:
        seeds = {"0": base, "1": base + 0.02, "2": base + 0.04}
        return {"lr": lr, "n": 3, "mean": base + 0.02, "low": base, "high": base + 0.04, "diverged": 0, "seeds": seeds}

    families = [{"method": "z_loss", "coefficients": {"z_loss_weight": lam},
                 "cells": [cell(1e-2, 2.0), cell(3e-1, 2.5 + lam)]} for lam in (1e-4, 1e-1)]  # fmt: skip
    plot = plots.lambda_plot("lambda-z_loss", families, column="z_loss_weight", title="λ", l0=5.5)
    again = plots.lambda_plot("lambda-z_loss", families, column="z_loss_weight", title="λ", l0=5.5)
    assert "2 lines" in plot.alt and "each dot is one seed" in plot.caption
    assert plot.svg == again.svg and plot.svg.count("<path") > 10  # two lines, 12 seed dots, 4 bars


def test_power_text_writes_the_seeds_needed_as_a_count() -> None:
    from search_spaces.reports.report_text import power_text

    base = {"mde": 0.0341, "verdict": "not resolved"}
    # a paired-delta table with one row beyond the search carries the others' counts as floats
    assert power_text({**base, "seeds_needed": 137.0}) == "resolves ≥ 0.0341; 137 seeds for this Δ"
    for beyond in (None, float("nan")):
        assert power_text({**base, "seeds_needed": beyond}).endswith("; this Δ needs > 10000 seeds")
    assert power_text({**base, "verdict": "better", "seeds_needed": 4.0}) == "resolves ≥ 0.0341"
