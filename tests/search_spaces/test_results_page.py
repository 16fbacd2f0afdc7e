"""The results page: generated blocks come from the committed study data, and a page that says something
else is caught (``lossweep results build --check``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from search_spaces.reports import results_page
from search_spaces.run import results
from tests.search_spaces.synthetic_sweep import paper_grid_trials, trial, write_sweep

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "results.md"
DATA = ROOT / "docs" / "results"
STUDIES = ROOT / "docs" / "studies"

LR_GRID = (3e-3, 3e-2, 3e-1)


def _study(tmp_path: Path, name: str = "lr-study") -> Path:
    rows = [r for r in paper_grid_trials(seeds=(0, 1, 2)) if r["lr"] in LR_GRID and r["method"] != "simreg"
            and r.get("mu_loss_weight") in (None, 1e-4) and r.get("z_loss_weight") in (None, 1e-4)]  # fmt: skip
    return write_sweep(tmp_path / "sweep" / name, rows, name=name)


def test_the_committed_page_matches_the_committed_data() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert results_page.BEGIN in text, "docs/results.md has no generated block"
    stale = results_page.stale_blocks(text, DATA)
    assert not stale, f"docs/results.md differs from docs/results/ in: {stale}; run `lossweep results build`"


def test_every_study_has_data_within_the_size_budget_and_one_code_version() -> None:
    specs = sorted(p.stem for p in STUDIES.glob("*.yaml"))
    assert specs, "docs/studies/ holds no study"
    shas = set()
    for name in specs:
        study = DATA / name
        assert all((study / f).is_file() for f in results_page.STUDY_FILES), f"{name}: study data missing"
        assert results.load_spec(study / results.SPEC_FILE) == results.load_spec(STUDIES / f"{name}.yaml"), (
            f"{name}: the committed data was run from another spec than docs/studies/{name}.yaml"
        )
        shas.add(json.loads((study / results.MANIFEST_FILE).read_text())["git_sha"])
        trials = results.read_trials(study)
        assert {"seed", "config_hash", "git_sha"} <= set(trials.columns) and trials["config_hash"].notna().all()
        shas |= set(trials["git_sha"])  # each trial's own record of the code it ran
    assert len(shas) == 1, f"the studies were run on several code versions: {sorted(shas)}"
    assert results_page.data_size(DATA) <= results_page.SIZE_BUDGET_BYTES


def test_a_number_typed_by_hand_is_caught(tmp_path: Path) -> None:
    sweep = _study(tmp_path)
    data = tmp_path / "data"
    results_page.collect(sweep, data)
    page = "# Results\n\nProse.\n\n<!-- generated: paper-lrs lr-study -->\n<!-- end generated -->\n\nMore prose.\n"
    fresh = results_page.render(page, data)
    assert fresh.startswith("# Results\n\nProse.\n\n") and fresh.endswith("<!-- end generated -->\n\nMore prose.\n")
    assert results_page.stale_blocks(fresh, data) == []
    assert results_page.render(fresh, data) == fresh
    number = re.search(r"\| baseline \| (\d\.\d{3})", fresh)
    assert number is not None
    edited = fresh.replace(number.group(0), number.group(0)[:-1] + str((int(number.group(0)[-1]) + 1) % 10), 1)
    assert results_page.stale_blocks(edited, data) == ["paper-lrs lr-study"]


def test_the_paper_beside_covers_every_size_and_is_recomputed_on_the_study_grid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    results_page.collect(_study(tmp_path), data)
    text = results_page.render("<!-- generated: paper-lrs lr-study -->\n<!-- end generated -->\n", data)
    for size in ("16M", "29M", "57M", "109M", "221M"):
        assert f"paper {size} |" in text and f"paper {size}, this grid" in text
    # the paper's published LRS at 16M (its table) and its relative LRS, next to ours
    assert "| baseline | " in text and "0.306" in text
    per_lr = results_page.render("<!-- generated: paper-per-lr lr-study -->\n<!-- end generated -->\n", data)
    # the paper's 16M baseline at lr 3e-3 is the mean of its published runs
    runs = pd.read_csv(results_page.paper_reference.PAPER_RUNS_CSV)
    base = runs[runs["name"].str.contains("-16M-") & runs["name"].str.contains("-lr30-baseline")]
    assert f"{base['test_loss'].mean():.3f}" in per_lr


def test_collect_keeps_the_study_files_without_the_location(tmp_path: Path) -> None:
    sweep = _study(tmp_path)
    (sweep / "trials").mkdir()
    (sweep / "trials" / "big.bin").write_bytes(b"x" * 100_000)
    progress = json.loads((sweep / results.PROGRESS_FILE).read_text())
    progress["sweep_dir"] = str(sweep.resolve())
    (sweep / results.PROGRESS_FILE).write_text(json.dumps(progress))
    trial_id = str(results.read_trials(sweep)["trial_id"].iloc[0])
    manifest = sweep / "trials" / trial_id / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"git_sha": "abc123", "num_params": 590848, "platform": "Linux-x86_64"}))
    dest = results_page.collect(sweep, tmp_path / "data")
    assert sorted(p.name for p in dest.iterdir()) == sorted(results_page.STUDY_FILES)
    kept = results.read_trials(dest).set_index("trial_id")
    assert kept.loc[trial_id, "git_sha"] == "abc123" and kept.loc[trial_id, "num_params"] == 590848
    assert kept["git_sha"].isna().sum() == len(kept) - 1  # trials without a manifest record nothing
    assert str(sweep.resolve()) not in (dest / results.PROGRESS_FILE).read_text()
    original = results.read_trials(sweep)
    pd.testing.assert_frame_equal(results.read_trials(dest)[list(original.columns)], original)
    # a sweep that has not ended is not a study
    progress["status"] = "RUNNING"
    (sweep / results.PROGRESS_FILE).write_text(json.dumps(progress))
    with pytest.raises(ValueError, match="has not ended"):
        results_page.collect(sweep, tmp_path / "data")


@pytest.mark.parametrize(
    ("head", "message"),
    [("nonsense", "unknown block kind"), ("study", "names its study"), ("study nowhere", "no study data"),
     ("study lr-study summary,nope", "unknown section")],
)  # fmt: skip
def test_a_bad_block_says_what_is_wrong(tmp_path: Path, head: str, message: str) -> None:
    data = tmp_path / "data"
    results_page.collect(_study(tmp_path), data)
    with pytest.raises(results_page.PageError, match=message):
        results_page.render(f"<!-- generated: {head} -->\n<!-- end generated -->\n", data)


def test_the_cli_check_fails_on_a_stale_page_and_build_mends_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    results_page.collect(_study(tmp_path), data)
    page = tmp_path / "page.md"
    page.write_text("Intro.\n<!-- generated: study lr-study summary,lrs -->\nold\n<!-- end generated -->\n")
    cli = [sys.executable, "-m", "lossweep.cli.main", "results", "build", "--page", str(page), "--data", str(data)]
    checked = subprocess.run([*cli, "--check"], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 1 and "study lr-study summary,lrs" in checked.stderr
    built = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    assert "### Learning-rate sensitivity" in page.read_text()
    assert subprocess.run([*cli, "--check"], capture_output=True, text=True, cwd=ROOT).returncode == 0
    missing = subprocess.run([*cli[:-2], "--data", str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr


def test_lambda_cells_pair_each_coefficient_with_the_smallest(tmp_path: Path) -> None:
    rows = [trial(f"z{lam}-{lr}-{seed}", "z_loss", lr, 2.0 + (0.5 + 0.01 * seed if lam > 1 else 0.0) + 0.02 * seed,
                  seed=seed, z_loss_weight=lam)
            for lam in (1e-4, 100.0) for lr in (3e-2, 3e-1) for seed in range(3)]  # fmt: skip
    data = tmp_path / "data"
    results_page.collect(write_sweep(tmp_path / "sweep" / "lam", rows, name="lam"), data)
    text = results_page.render("<!-- generated: lambda-cells lam -->\n<!-- end generated -->\n", data)
    worse = [line for line in text.splitlines() if "z_loss_weight = 100 |" in line]
    assert len(worse) == 2 and all("+0.510 [" in line and line.endswith("| worse |") for line in worse), worse
    assert text.count("| reference |") == 2


def test_the_summary_of_a_study_over_sizes_names_each_size_with_its_parameters(tmp_path: Path) -> None:
    from tests.search_spaces.test_sizes import SIZES, two_size_rows

    counts = {SIZES[0]: 1234, SIZES[1]: 56789}
    rows = two_size_rows()
    sweep = write_sweep(tmp_path / "sweep", rows, name="sizes", spec={"name": "sizes", "model": {"preset": SIZES}})
    for row in rows:  # each trial's manifest records its parameter count, which collect keeps
        manifest = sweep / "trials" / row["trial_id"] / "manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(json.dumps({"num_params": counts[row["model"]]}))
    results_page.collect(sweep, tmp_path / "data")
    page = results_page.render("<!-- generated: study sizes summary,sizes -->\n<!-- end generated -->\n",
                               tmp_path / "data")  # fmt: skip
    assert "2 model sizes with their parameter counts: `oec-16m` (1,234), `oec-29m` (56,789)" in page
    assert "## Across model sizes" in page and "| oec-29m | z-loss |" in page
