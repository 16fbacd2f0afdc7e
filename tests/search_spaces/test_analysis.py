"""search_spaces.analysis.sensitivity against values computed by hand (float64) and against the OEC paper's table."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from search_spaces.analysis import paper_reference, speedup, trial_frame
from search_spaces.analysis import sensitivity as analysis
from search_spaces.analysis.best import best_configs
from tests.search_spaces.synthetic_sweep import trial

L0 = math.log(256)


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def reference_lrs(losses: list[float], l0: float) -> float:
    """The definition, spelled out: 1/(K-1) * sum_k [min(L_k, L0) - min_k L_k] (min over capped values)."""
    capped = []
    for value in losses:
        capped.append(l0 if (value != value or value > l0) else value)
    best = capped[0]
    for value in capped:
        if value < best:
            best = value
    total = 0.0
    for value in capped:
        total += value - best
    return total / (len(capped) - 1)


# ---------------------------------------------------------------------------------------------------
# LR sensitivity
# ---------------------------------------------------------------------------------------------------


def test_lr_sensitivity_value_caps_at_uniform_loss_and_counts_nan_as_l0() -> None:
    losses = [3.0, 2.5, 2.6, float("nan"), 9.0]
    # capped: 3.0, 2.5, 2.6, L0, L0; min 2.5; sum = 0.5 + 0 + 0.1 + 2 (L0 - 2.5)
    expected = (0.5 + 0.1 + 2 * (L0 - 2.5)) / 4
    assert trial_frame.lr_sensitivity_value(losses, L0) == pytest.approx(expected, abs=1e-12)
    assert trial_frame.lr_sensitivity_value(losses, L0) == pytest.approx(reference_lrs(losses, L0), abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        trial_frame.lr_sensitivity_value([2.0], L0)


def test_lr_sensitivity_per_family_with_seeds_divergence_and_unfinished_trials() -> None:
    rows = [
        trial("b1", "baseline", 1e-3, 3.0, seed=0),
        trial("b2", "baseline", 1e-3, 3.2, seed=1),
        trial("b3", "baseline", 1e-2, 2.5, seed=0),
        trial("b4", "baseline", 1e-2, 2.7, seed=1),
        trial("b5", "baseline", 1e-1, 0.0, seed=0, status="DIVERGED"),
        trial("b6", "baseline", 1e-1, 4.0, seed=1),
        trial("b7", "baseline", 1.0, 2.0, seed=0, status="RUNNING"),  # unfinished: not counted
        trial("z1", "z_loss", 1e-3, 2.9, z_loss_weight=1e-4),
        trial("z2", "z_loss", 1e-2, 2.4, z_loss_weight=1e-4),
        trial("z3", "z_loss", 1e-3, 2.8, z_loss_weight=1e-1),
        trial("z4", "z_loss", 1e-2, 2.3, z_loss_weight=1e-1, status="STOPPED"),  # ASHA-stopped: not counted
    ]
    table = analysis.lr_sensitivity(frame(rows))
    assert list(table["label"]) == [
        "baseline",
        "z_loss (z_loss_weight=0.0001)",
        "z_loss (z_loss_weight=0.1)",
    ]
    base = table.iloc[0]
    # seed means per LR: 1e-3 -> 3.1, 1e-2 -> 2.6, 1e-1 -> (L0 + 4.0)/2
    means = [3.1, 2.6, (L0 + 4.0) / 2]
    assert base["K"] == 3
    assert base["losses"] == pytest.approx(means)
    assert base["lrs"] == pytest.approx(reference_lrs(means, L0), abs=1e-12)
    per_seed = [reference_lrs([3.0, 2.5, L0], L0), reference_lrs([3.2, 2.7, 4.0], L0)]
    assert base["lrs_seed_std"] == pytest.approx(pd.Series(per_seed).std(ddof=1), abs=1e-12)
    assert base["n_seeds"] == 2
    assert base["diverged"] == 1
    assert base["diverged_lrs"] == [0.1]
    assert base["largest_stable_lr"] == pytest.approx(1e-2)
    assert not base["complete"]
    assert "not finished" in base["note"]

    z_default = table.iloc[1]
    assert z_default["lrs"] == pytest.approx(0.5, abs=1e-12)  # (2.9 - 2.4) / 1
    assert z_default["largest_stable_lr"] == pytest.approx(1e-2)
    z_big = table.iloc[2]
    assert z_big["K"] == 1 and pd.isna(z_big["lrs"])
    assert "needs >= 2" in z_big["note"]


def test_bookkeeping_columns_do_not_split_families() -> None:
    rows = [trial("a", "baseline", 1e-3, 2.5), trial("b", "baseline", 1e-2, 2.0)]
    rows[0]["node_id"], rows[1]["node_id"] = "node-1", "node-2"
    table = analysis.lr_sensitivity(frame(rows))
    assert len(table) == 1 and table.iloc[0]["K"] == 2 and table.iloc[0]["lrs"] == pytest.approx(0.5)


def test_lambda_robustness_gives_lrs_per_coefficient_value() -> None:
    rows = []
    for lam, losses in ((1e-7, [3.0, 2.0]), (1e-4, [2.5, 2.0]), (1e2, [2.0, L0])):
        for lr, value in zip((1e-3, 1e-2), losses, strict=True):
            status = "DIVERGED" if value == L0 else "TERMINATED"
            rows.append(trial(f"m{lam}-{lr}", "mu_loss", lr, value, status=status, mu_loss_weight=lam))
    rob = analysis.lambda_robustness(frame(rows))
    assert list(rob["value"]) == [1e-7, 1e-4, 1e2]
    assert list(rob["lrs"]) == pytest.approx([1.0, 0.5, L0 - 2.0])
    assert list(rob["diverged"]) == [0, 0, 1]
    assert rob.iloc[2]["largest_stable_lr"] == pytest.approx(1e-3)


def test_grid_matrix_means_over_seeds_and_flags_divergence() -> None:
    rows = [
        trial("a", "z_loss", 1e-3, 2.0, seed=0, z_loss_weight=1e-4),
        trial("b", "z_loss", 1e-3, 2.2, seed=1, z_loss_weight=1e-4),
        trial("c", "z_loss", 1e-2, 0.0, seed=0, status="DIVERGED", z_loss_weight=1e2),
        trial("d", "z_loss", 1e-2, 3.0, seed=0, status="RUNNING", z_loss_weight=1e-4),  # not finished
    ]
    m = analysis.grid_matrix(frame(rows), "z_loss_weight", "lr", methods=["z_loss"])
    assert m["rows"] == [1e-4, 1e2] and m["cols"] == [1e-3, 1e-2]
    assert m["values"][0][0] == pytest.approx(2.1)
    assert m["values"][0][1] is None
    assert m["values"][1][1] == pytest.approx(L0)
    assert m["diverged"][1][1] == 1 and m["counts"][0][0] == 2


def test_grid_matrix_min_over_other_parameters_per_seed() -> None:
    rows = [
        trial("a", "simreg", 1e-3, 2.0, seed=0, simreg_weight=0.1, simreg_temperature=0.1),
        trial("b", "simreg", 1e-2, 1.8, seed=0, simreg_weight=0.1, simreg_temperature=0.1),
        trial("c", "simreg", 1e-3, 2.4, seed=1, simreg_weight=0.1, simreg_temperature=0.1),
    ]
    m = analysis.grid_matrix(frame(rows), "simreg_weight", "simreg_temperature", reduce="min")
    assert m["values"] == [[pytest.approx((1.8 + 2.4) / 2)]]


# ---------------------------------------------------------------------------------------------------
# Best configuration
# ---------------------------------------------------------------------------------------------------


def test_best_excludes_diverged_and_failed_and_breaks_ties() -> None:
    rows = [
        trial("div", "baseline", 1e-1, 0.0, status="DIVERGED", best=1.0),  # lowest, but diverged
        trial("err", "baseline", 1e-2, 1.1, status="ERROR"),
        trial("pend", "baseline", 1e-2, 1.2, status="PENDING"),
        trial("b-late", "baseline", 1e-3, 2.2, best=2.0),
        trial("b-early", "baseline", 3e-3, 2.1, best=2.0),  # same best, lower final: wins the tie
        trial("mu", "mu_centering", 1e-3, 1.9, best=1.9, status="STOPPED"),
        trial("z-only-div", "z_loss", 1e-3, 0.0, status="DIVERGED", z_loss_weight=1e-4),
    ]
    best = best_configs(frame(rows))
    assert "diverge" in best["rule"]
    assert best["overall"]["trial_id"] == "mu"
    assert best["overall"]["status"] == "STOPPED"
    assert best["per_method"]["baseline"]["trial_id"] == "b-early"
    assert best["per_method"]["baseline"]["params"] == {"lr": 3e-3}
    assert best["per_method"]["baseline"]["step"] == 100
    assert "z_loss" not in best["per_method"]
    assert any("z_loss" in m for m in best["missing"])
    assert list(best["per_method"]) == ["baseline", "mu_centering"]


def test_best_of_only_diverged_and_of_empty_sweep_say_what_is_missing() -> None:
    only_div = frame([trial("d", "baseline", 1.0, 0.0, status="DIVERGED")])
    best = best_configs(only_div)
    assert best["overall"] is None and "no best configuration" in best["missing"][0]
    empty = best_configs(pd.DataFrame())
    assert empty["overall"] is None and "no trials" in empty["missing"][0]


# ---------------------------------------------------------------------------------------------------
# Paired deltas and convergence speed-up
# ---------------------------------------------------------------------------------------------------


def test_paired_deltas_pair_on_seed_and_lr() -> None:
    rows = [
        trial("b0", "baseline", 1e-3, 3.0, seed=0),
        trial("b1", "baseline", 1e-3, 3.2, seed=1),
        trial("b2", "baseline", 1e-2, 0.0, seed=0, status="DIVERGED"),
        trial("m0", "mu_loss", 1e-3, 2.9, seed=0, mu_loss_weight=1e-4),
        trial("m1", "mu_loss", 1e-3, 3.0, seed=1, mu_loss_weight=1e-4),
        trial("m2", "mu_loss", 1e-2, 2.5, seed=0, mu_loss_weight=1e-4),
        trial("m3", "mu_loss", 1e-2, 2.6, seed=1, mu_loss_weight=1e-4),  # no baseline at (1e-2, seed 1)
    ]
    d = analysis.paired_deltas(frame(rows))
    assert list(d["lr"]) == [1e-3, 1e-2]
    first, second = d.iloc[0], d.iloc[1]
    assert first["n_pairs"] == 2
    assert first["delta_mean"] == pytest.approx(((2.9 - 3.0) + (3.0 - 3.2)) / 2)
    assert first["delta_std"] == pytest.approx(pd.Series([-0.1, -0.2]).std(ddof=1))
    assert second["n_pairs"] == 1 and math.isnan(second["delta_std"])
    assert second["delta_mean"] == pytest.approx(2.5 - L0)


def test_tokens_to_reach_interpolates_between_evaluations() -> None:
    curve = pd.DataFrame({"tokens": [100, 200, 300, 400], "val_loss": [4.5, 3.0, 2.0, 1.8]})
    assert speedup.tokens_to_reach(curve, 2.5) == pytest.approx(250.0)
    assert speedup.tokens_to_reach(curve, 4.5) == pytest.approx(100.0)
    assert speedup.tokens_to_reach(curve, 1.0) is None


def test_convergence_speedup_against_the_best_baseline() -> None:
    rows = [
        trial("b", "baseline", 1e-3, 2.5),
        trial("s", "simreg", 1e-3, 1.8, simreg_weight=0.1, simreg_temperature=0.1),
        trial("z", "z_loss", 1e-3, 2.6, z_loss_weight=1e-4),
    ]
    metrics = pd.DataFrame(
        {
            "trial_id": ["b"] * 4 + ["s"] * 4 + ["z"] * 2,
            "tokens": [100, 200, 300, 400] * 2 + [100, 200],
            "val_loss": [5.0, 4.0, 3.0, 2.5, 4.5, 3.0, 2.0, 1.8, 3.0, 2.6],
        }
    )
    out = speedup.convergence_speedup(frame(rows), metrics)
    assert out["baseline"] == {"trial_id": "b", "target_val_loss": 2.5, "tokens": 400.0}
    assert [m["method"] for m in out["methods"]] == ["z_loss", "simreg"]  # the paper's method order
    by = {m["method"]: m for m in out["methods"]}
    assert by["simreg"]["tokens"] == pytest.approx(250.0)
    assert by["simreg"]["speedup"] == pytest.approx(400.0 / 250.0)
    assert by["z_loss"]["reached"] is False and by["z_loss"]["speedup"] is None
    assert by["z_loss"]["speedup_upper_bound"] == pytest.approx(400.0 / 200.0)


def test_speedup_over_seeds_pairs_each_seed_with_its_own_baseline() -> None:
    simreg = {"simreg_weight": 0.1, "simreg_temperature": 0.1}
    rows = [
        trial("b0", "baseline", 1e-3, 2.5, seed=0),
        trial("b1", "baseline", 1e-3, 2.6, seed=1),
        trial("b2", "baseline", 1e-3, 2.4, seed=2),
        trial("bx", "baseline", 1e-2, 3.0, seed=1),  # another learning rate: not a repeat of the best
        trial("s0", "simreg", 1e-3, 2.0, seed=0, **simreg),
        trial("s1", "simreg", 1e-3, 2.1, seed=1, **simreg),
        trial("s2", "simreg", 1e-3, 2.5, seed=2, **simreg),  # never reaches seed 2's baseline CE
        trial("sx", "simreg", 1e-3, 1.0, seed=0, simreg_weight=0.5, simreg_temperature=0.1),
    ]
    tokens = [100, 200, 300, 400]
    curves = {
        "b0": [4.0, 3.0, 2.8, 2.5],  # target 2.5 at 400
        "b1": [4.0, 3.2, 2.6, 2.6],  # target 2.6 first at 300
        "b2": [4.0, 3.0, 2.6, 2.4],  # target 2.4 at 400
        "bx": [4.0, 3.5, 3.2, 3.0],
        "s0": [3.5, 2.5, 2.2, 2.0],  # reaches 2.5 at 200: 400 / 200 = 2.0
        "s1": [3.8, 3.0, 2.2, 2.1],  # reaches 2.6 between 200 (3.0) and 300 (2.2): at 250 -> 300 / 250 = 1.2
        "s2": [3.9, 3.0, 2.6, 2.5],
        "sx": [3.0, 2.0, 1.5, 1.0],
    }
    metrics = pd.DataFrame(
        {
            "trial_id": [t for t in curves for _ in tokens],
            "tokens": tokens * len(curves),
            "val_loss": [v for values in curves.values() for v in values],
        }
    )
    # The best simreg configuration is sx's (weight 0.5), which ran on seed 0 only.
    out = speedup.convergence_speedup(frame(rows), metrics)
    simreg_out = next(m for m in out["methods"] if m["method"] == "simreg")
    assert simreg_out["trial_id"] == "sx"
    assert [p["seed"] for p in simreg_out["per_seed"]] == [0]
    # Without sx the best simreg configuration is weight 0.1, repeated on three seeds.
    out = speedup.convergence_speedup(frame([r for r in rows if r["trial_id"] != "sx"]), metrics)
    simreg_out = next(m for m in out["methods"] if m["method"] == "simreg")
    per_seed = {p["seed"]: p for p in simreg_out["per_seed"]}
    assert {p["baseline_trial_id"] for p in per_seed.values()} == {"b0", "b1", "b2"}
    assert per_seed[0]["speedup"] == pytest.approx(2.0)
    assert per_seed[1]["target_val_loss"] == pytest.approx(2.6)
    assert per_seed[1]["speedup"] == pytest.approx(1.2)
    assert per_seed[2]["speedup"] is None
    assert simreg_out["seeds_reached"] == 2
    assert simreg_out["speedup_mean"] == pytest.approx(1.6)
    assert simreg_out["speedup_std"] == pytest.approx(math.sqrt(((2.0 - 1.6) ** 2 + (1.2 - 1.6) ** 2) / 1))


def test_speedup_without_baseline_or_metrics_says_why() -> None:
    rows = frame([trial("s", "simreg", 1e-3, 1.8, simreg_weight=0.1, simreg_temperature=0.1)])
    assert "baseline" in speedup.convergence_speedup(rows, pd.DataFrame({"trial_id": ["s"]}))["missing"][0]
    assert "metrics" in speedup.convergence_speedup(rows, None)["missing"][0]


# ---------------------------------------------------------------------------------------------------
# Everything at once; the paper's table
# ---------------------------------------------------------------------------------------------------


def test_analyze_is_json_ready_for_full_and_empty_sweeps() -> None:
    rows = [trial(f"b{i}", "baseline", lr, 2.0 + i / 10) for i, lr in enumerate(paper_reference.PAPER_LR_GRID)]
    out = analysis.analyze(frame(rows), None)
    json.dumps(out, allow_nan=False)
    assert out["counts"]["TERMINATED"] == 7
    assert out["paper"] is not None and out["paper"]["no_tying"]["16M"]["baseline"] == 0.306
    assert out["lr_sensitivity"]["families"][0]["lrs"] == pytest.approx(sum(i / 10 for i in range(7)) / 6)
    empty = analysis.analyze(pd.DataFrame(), None)
    json.dumps(empty, allow_nan=False)
    assert empty["best"]["overall"] is None and empty["lr_sensitivity"]["families"] == []


def test_paper_grid_detection() -> None:
    assert paper_reference.uses_paper_lr_grid([3e-4, 1e-3, 0.003, 1e-2, 3e-2, 0.1, 0.30000000000000004])
    assert not paper_reference.uses_paper_lr_grid([1e-3, 1e-2])


def test_paper_lrs_column_reproduced_from_the_published_runs() -> None:
    path = paper_reference.PAPER_RUNS_CSV  # shipped with the package
    ours = paper_reference.paper_lrs_by_size()
    # The paper's LRS table (docs/papers.md: no weight tying, lambda = 1e-4), to its 3 decimals.
    for size, table in paper_reference.PAPER_LRS.items():
        for method, published in table.items():
            assert ours[size][method] == pytest.approx(published, abs=6e-4), (size, method)
    assert ours["16M"] == pytest.approx(
        {"baseline": 0.306, "z_loss": 0.054, "mu_loss": 0.031, "mu_centering": 0.028}, abs=6e-4
    )
    full = paper_reference.paper_lr_sensitivity(path)
    assert len(full) == len(paper_reference.paper_lr_sensitivity())
    assert set(full["size"]) == {"16M", "29M", "57M", "109M", "221M"}
    assert (full["K"] == 7).all()
    # λ robustness as the paper states it: z-loss breaks at λ = 1e2, μ-loss does not.
    at_100 = full[full["coefficient"] == 100.0].set_index(["size", "method"])["lrs"]
    assert (at_100.xs("z_loss", level="method") > 1.0).all()
    assert (at_100.xs("mu_loss", level="method") < 0.1).all()


def test_paper_reader_rejects_an_unknown_run_name(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("name,test_loss\nnot-a-run,3.0\n")
    with pytest.raises(ValueError, match="does not follow"):
        paper_reference.read_paper_runs(path)
    with pytest.raises(FileNotFoundError):
        paper_reference.read_paper_runs(tmp_path / "absent.csv")



def test_lr_sensitivity_uses_the_recorded_l0_and_caps_min_final_l0() -> None:
    # the measured-initial-loss convention: each trial records its L0 (here 5.0, below ln V)
    rows = [
        {**trial("a", "baseline", 1e-3, 3.0), "l0": 5.0, "above_l0_step": -1},
        {**trial("b", "baseline", 1e-2, 2.0), "l0": 5.0, "above_l0_step": -1},
        # went above L0 + margin at step 50 and came back: a flag, and its final loss counts as it is
        {**trial("c", "baseline", 1e-1, 2.5), "l0": 5.0, "above_l0_step": 50},
        # ended above L0 (never stopped): counts as min(final, L0) = 5.0
        {**trial("d", "baseline", 1.0, 5.3), "l0": 5.0, "above_l0_step": 25},
    ]
    table = analysis.lr_sensitivity(frame(rows))
    base = table.iloc[0]
    assert base["l0"] == 5.0
    assert base["losses"] == pytest.approx([3.0, 2.0, 2.5, 5.0])
    assert base["lrs"] == pytest.approx(reference_lrs([3.0, 2.0, 2.5, 5.3], 5.0), abs=1e-12)
    assert base["diverged"] == 0
    # without a recorded l0 (older sweeps) L0 is ln V
    old = analysis.lr_sensitivity(frame([trial("a", "baseline", 1e-3, 3.0), trial("b", "baseline", 1e-2, 2.0)]))
    assert old.iloc[0]["l0"] == pytest.approx(L0)
