"""The model size as an axis of one sweep: trials at every size, each size analysed on its own (pairs,
families, confirm selection), and the sizes set beside the paper's runs at the same sizes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from pydantic import ValidationError

from search_spaces.analysis import paper_reference, trial_frame
from search_spaces.analysis import sensitivity as analysis
from search_spaces.analysis.confirm import confirm_comparison, confirm_configurations
from search_spaces.analysis.size_comparison import paper_size_of, size_comparison
from search_spaces.reports.render import render
from search_spaces.run import results
from search_spaces.spec.footprint import footprint
from search_spaces.spec.spaces import define_by_run, explicit_trials
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.translate import TrialPlan, trial_params
from tests.search_spaces.synthetic_sweep import VOCAB, trial
from trainables.data.vocabulary import DataVocabulary

SIZES = ["oec-16m", "oec-29m"]
LRS = [1e-3, 1e-2, 1e-1]  # points of the paper's grid


def _spec(**doc: Any) -> SweepSpec:
    base: dict[str, Any] = {"name": "sizes", "model": {"preset": ["tiny", "cpu-small"]},
                            "budget": {"steps": 20, "eval_interval": 5}, "methods": ["baseline", "z_loss"],
                            "lr": [1e-3, 1e-2], "seeds": [0, 1]}  # fmt: skip
    return SweepSpec.model_validate({**base, **doc})


def test_every_configuration_runs_at_every_size_and_each_trial_trains_its_own() -> None:
    spec = _spec(confirm={"seeds": [7]})
    trials = explicit_trials(spec)
    assert len(trials) == spec.search_trials() == 2 * 2 * 2 * 2
    assert spec.num_trials() == 16 + 2 * 2 * 1  # confirm: methods x sizes x top_k x seeds
    assert [t["model"] for t in trials] == ["tiny"] * 8 + ["cpu-small"] * 8
    plan = TrialPlan.from_spec(spec)
    assert {plan.config(trial_params({"params": t})).model for t in trials} == {"tiny", "cpu-small"}
    # One size: the trials are as they always were, without a model entry.
    assert all("model" not in t for t in explicit_trials(_spec(model={"preset": "tiny"})))


def test_tpe_gives_every_size_its_turn() -> None:
    spec = _spec(search={"algorithm": "tpe", "num_samples": 8})
    space, study = define_by_run(spec), optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(8):
        t = study.ask()
        constants = space(t)
        seen.append((constants["method"], constants["model"], constants["seed"]))
        study.tell(t, 1.0)
    assert sorted(seen) == sorted((m, s, seed) for m in spec.methods for s in ["tiny", "cpu-small"] for seed in [0, 1])


def test_the_largest_size_sets_the_memory_and_parameter_limits() -> None:
    vocab = DataVocabulary(vocab_size=257, tokenizer="bytes")
    both, small = footprint(_spec(), vocab), footprint(_spec(model={"preset": "tiny"}), vocab)
    large = footprint(_spec(model={"preset": "cpu-small"}), vocab)
    assert both.params == large.params > small.params
    assert both.activation_bytes_per_worker == large.activation_bytes_per_worker


@pytest.mark.parametrize(
    ("preset", "needle"),
    [(["tiny", "nope"], "unknown model preset 'nope'"), (["tiny", "tiny"], "'tiny' is listed twice"),
     ([], "the list is empty")],
)  # fmt: skip
def test_bad_size_lists_name_the_field(preset: list[str], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle) as err:
        _spec(model={"preset": preset})
    assert "model" in str(err.value)


def two_size_rows(lrs: list[float] = LRS) -> list[dict[str, Any]]:
    """Two sizes whose baselines differ by 1 nat at every LR: a pairing across sizes would show it."""
    rows = []
    for size, offset in zip(SIZES, (1.0, 0.0), strict=True):
        for seed in (0, 1, 2):
            for lr, curve in zip(lrs, (3.0, 2.8, 3.4), strict=True):
                base = trial(f"{size}-b-{lr}-{seed}", "baseline", lr, curve + offset + 0.01 * seed, seed=seed)
                zl = trial(f"{size}-z-{lr}-{seed}", "z_loss", lr, curve + offset - 0.1 + 0.01 * seed, seed=seed,
                           z_loss_weight=1e-4)  # fmt: skip
                rows += [{**base, "model": size}, {**zl, "model": size}]
    return rows


def test_each_size_is_analysed_on_its_own() -> None:
    trials = pd.DataFrame(two_size_rows())
    table = analysis.lr_sensitivity(trials)
    assert list(table["model"]) == ["oec-16m", "oec-16m", "oec-29m", "oec-29m"]
    assert table["label"].iloc[0] == "oec-16m · baseline"
    l0 = math.log(VOCAB)
    for rec in table.to_dict("records"):
        mine = trials[(trials["model"] == rec["model"]) & (trials["method"] == rec["method"])]
        means = [float(mine[mine["lr"] == lr]["final_val_loss"].mean()) for lr in LRS]
        assert rec["lrs"] == pytest.approx(trial_frame.lr_sensitivity_value(means, l0), abs=1e-12)
    deltas = analysis.paired_deltas(trials)
    # Paired within a size: z-loss is 0.1 below its own size's baseline everywhere.
    assert len(deltas) == 2 * len(LRS) and set(deltas["model"]) == set(SIZES)
    assert deltas["delta_mean"].to_numpy() == pytest.approx([-0.1] * 6, abs=1e-9)
    assert set(analysis.lrs_differences(trials)["model"]) == set(SIZES)
    assert set(analysis.lambda_robustness(trials)["model"]) == set(SIZES)


def test_confirm_hands_on_and_compares_per_size() -> None:
    trials = pd.DataFrame(two_size_rows())
    chosen = confirm_configurations(trials, ["baseline", "z_loss"], top_k=1)
    assert [(c["model"], c["method"], c["lr"]) for c in chosen] == [
        ("oec-16m", "baseline", 1e-2), ("oec-16m", "z_loss", 1e-2),
        ("oec-29m", "baseline", 1e-2), ("oec-29m", "z_loss", 1e-2),
    ]  # fmt: skip
    confirm = []
    for c in chosen:
        for seed in (10, 11):
            params = {k: v for k, v in c.items() if k not in ("method", "lr", "model")}
            loss = 2.8 + (1.0 if c["model"] == "oec-16m" else 0.0) - (0.1 if c["method"] == "z_loss" else 0.0)
            row = trial(f"c-{c['model']}-{c['method']}-{seed}", c["method"], c["lr"], loss + 0.01 * seed, seed=seed,
                        **params)  # fmt: skip
            confirm.append({**row, "model": c["model"], "stage": "confirm"})
    out = confirm_comparison(pd.DataFrame(two_size_rows() + confirm))
    compared = [c for c in out["configs"] if c["comparison"] is not None]
    assert len(compared) == 2  # each size's z-loss against its own size's baseline
    assert [c["comparison"]["mean"] for c in compared] == pytest.approx([-0.1, -0.1], abs=1e-9)
    assert out["best"]["params"]["model"] == "oec-29m" and out["best"]["method"] == "z_loss"


def test_sizes_beside_the_paper_at_the_same_sizes() -> None:
    table = analysis.lr_sensitivity(pd.DataFrame(two_size_rows()))
    section = size_comparison(analysis.primary_families(table))
    assert section is not None and section["sizes"] == SIZES
    paper = paper_reference.paper_lrs_by_size(lrs=LRS)
    runs = paper_reference.read_paper_runs()
    for row in section["rows"]:
        size = paper_size_of(row["model"])
        assert row["paper_size"] == size
        assert row["paper_lrs"] == pytest.approx(paper[size][row["method"]])
        mine = runs[(runs["size"] == size) & (runs["method"] == row["method"]) & runs["lr"].isin(LRS)]
        if row["method"] == "z_loss":
            mine = mine[mine["coefficient"] == 1e-4]
        by_lr = mine.groupby("lr")["test_loss"].mean()
        assert row["paper_best_lr"] == pytest.approx(by_lr.idxmin()) and row["paper_best_loss"] == pytest.approx(
            by_lr.min()
        )
        assert row["best_lr"] == 1e-2
    one_size = analysis.lr_sensitivity(pd.DataFrame(two_size_rows()[:18]))
    assert size_comparison(analysis.primary_families(one_size)) is None
    assert paper_size_of("tiny") is None and paper_size_of("oec-221m") == "221M"
    assert paper_size_of("oec-16m-cpu") == "16M" and paper_size_of("oec-16m-gpu") is None


def test_the_papers_curve_covers_every_learning_rate_of_its_grid() -> None:
    # The published table writes some rates with float noise (0.030000000000000002): each must still match.
    runs = paper_reference.read_paper_runs()
    for lrs in ([3e-3, 3e-2, 3e-1], [3e-4, 1e-2, 1e-1]):
        section = size_comparison(analysis.primary_families(analysis.lr_sensitivity(pd.DataFrame(two_size_rows(lrs)))))
        assert section is not None
        for row in section["rows"]:
            mine = runs[(runs["size"] == row["paper_size"]) & (runs["method"] == row["method"])]
            if row["method"] == "z_loss":
                mine = mine[mine["coefficient"].map(lambda c: math.isclose(c, 1e-4))]
            expected = [float(mine[mine["lr"].map(lambda x, lr=lr: math.isclose(x, lr))]["test_loss"].mean())
                        for lr in lrs]  # fmt: skip
            assert row["paper_losses"] == pytest.approx(expected, abs=1e-12), (lrs, row["method"])
            assert row["paper_best_lr"] == pytest.approx(lrs[expected.index(min(expected))])


def test_the_report_of_a_sweep_over_sizes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    results.write_trials(str(sweep), two_size_rows())
    written = render(str(sweep))
    html = Path(written["html"]).read_text()
    md = Path(written["md"]).read_text()
    assert 'id="sizes"' in html and 'id="fig-sizes"' in html and 'id="fig-size-curves"' in html
    assert "oec-16m · baseline" in html
    assert "## Across model sizes" in md and "oec-29m (29M)" in md
    assert "heat maps, the speed-up and the mechanism figures are of the largest, oec-29m" in md
    # The per-LR table: our mean over seeds, the paper's test loss at the same size, method and rate beside it.
    runs = paper_reference.read_paper_runs()
    for size, offset in zip(SIZES, (1.0, 0.0), strict=True):
        paper = runs[(runs["size"] == paper_size_of(size)) & (runs["method"] == "baseline")]
        cells = []
        for lr, curve in zip(LRS, (3.0, 2.8, 3.4), strict=True):
            theirs = float(paper[paper["lr"].map(lambda x, lr=lr: math.isclose(x, lr))]["test_loss"].mean())
            cells.append(f"{curve + offset + 0.01:.3f} ({theirs:.3f})")  # seeds 0, 1, 2 add 0.01 on average
        assert f"| {size} | baseline | {' | '.join(cells)} |" in md
    assert 'id="sizes"' in html and html.count("compare the shape of each row") == 1


def test_the_best_configuration_of_a_sweep_over_sizes_reruns_its_own_size_alone() -> None:
    import yaml

    from search_spaces.reports.report import best_yaml

    spec = _spec(model={"preset": SIZES, "overrides": {"qk_norm": False}}).model_dump(mode="json")
    record = {"method": "z_loss", "trial_id": "t7", "seed": 2, "val_loss": 2.7, "step": 100,
              "params": {"model": "oec-29m", "lr": 0.01, "z_loss_weight": 1e-4}}  # fmt: skip
    rerun = SweepSpec.model_validate(yaml.safe_load(best_yaml(record, spec)))
    assert rerun.model.preset == "oec-29m" and rerun.model.overrides == {"qk_norm": False}
    assert rerun.coefficients == {"z_loss_weight": 1e-4} and rerun.lr == 0.01 and rerun.seeds == [2]
    assert len(explicit_trials(rerun)) == 1 and not rerun.model.is_axis()


def test_the_cli_analysis_of_a_sweep_over_sizes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    results.write_trials(str(sweep), two_size_rows())  # no metrics.parquet: the speed-up says what it misses
    cmd = [sys.executable, "-m", "lossweep.cli.main", "sweep", "analyze", str(sweep)]
    env = {**os.environ, "COLUMNS": "200"}  # no wrapped lines in the error box
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Across model sizes" in proc.stdout and "oec-29m (29M)" in proc.stdout
    (sweep / "trials.parquet").unlink()
    (sweep / "progress.json").write_text('{"status": "RUNNING"}')
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 2 and "no trials.parquet yet" in proc.stderr and "Traceback" not in proc.stderr


def test_the_live_trials_table_shows_the_size_only_when_it_is_an_axis(tmp_path: Path) -> None:
    from lossweep.cli.sweep import trials_table

    one = [{**r, "model": None} for r in two_size_rows()]
    for name, rows, sized in (("sizes", two_size_rows(), True), ("one", one, False)):
        sweep = tmp_path / name
        sweep.mkdir()
        results.write_trials(str(sweep), rows)
        table = trials_table(str(sweep), name)
        headers = [str(c.header) for c in table.columns]
        assert ("size" in headers) is sized
        if sized:
            assert set(table.columns[headers.index("size")].cells) == set(SIZES)
