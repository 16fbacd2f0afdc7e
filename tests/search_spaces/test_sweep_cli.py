"""``lossweep presets`` and the argument handling of ``lossweep sweep run`` (no Ray needed)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from lossweep.cli.main import app
from lossweep.cli.sweep import load_spec_arg, summary
from search_spaces.run import results
from search_spaces.run.sweep_dir import best_record
from search_spaces.spec.presets import get_preset

runner = CliRunner()


def test_presets_lists_sweep_presets() -> None:
    out = runner.invoke(app, ["presets", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["oec-lr-sensitivity"]["num_trials"] == 35 + 15 and rows["simreg-tpe"]["search"] == "tpe"
    table = runner.invoke(app, ["presets"])
    assert table.exit_code == 0 and "all-methods-tpe" in table.stdout


def test_presets_models_lists_parameter_counts() -> None:
    from trainables.model.presets import list_model_presets

    out = runner.invoke(app, ["presets", "--models", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["tiny"]["params"] == list_model_presets()["tiny"][1]
    assert "oec-221m" in rows


def test_presets_losses_lists_the_registry() -> None:
    from trainables.losses.registry import TERMS

    out = runner.invoke(app, ["presets", "--losses", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert list(rows) == list(TERMS)  # every term, built-in and plugin, in the registry's order
    assert rows["z_loss"]["coefficients"]["z_loss_weight"]["default"] == TERMS["z_loss"].weight.default
    assert rows["mu_centering"]["kind"] == "after_step" and rows["mu_centering"]["coefficients"] == {}
    table = runner.invoke(app, ["presets", "--losses"])
    assert table.exit_code == 0 and "mu_centering" in table.stdout and "built-in" in table.stdout


def test_spec_argument_file_or_preset_with_sets(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(get_preset("demo").model_dump(mode="json")))
    assert load_spec_arg(str(path), None) == get_preset("demo")
    spec = load_spec_arg("demo", ["budget.steps=40", "lr=[1e-3]", "methods=[baseline, z_loss]"])
    assert spec.budget.steps == 40 and spec.lr == [1e-3] and spec.search_trials() == 2


def _error(args: list[str]) -> str:
    out = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert out.exit_code == 2, out.output
    return " ".join(out.output.replace("│", " ").split())  # rich wraps the message in a box


def test_sweep_run_refuses_bad_input_with_the_field_named() -> None:
    assert "neither a spec file nor a preset" in _error(["sweep", "run", "no-such-preset"])
    assert "budget has no 'stepz'" in _error(["sweep", "run", "demo", "--set", "budget.stepz=3"])
    message = _error(["sweep", "run", "demo", "--set", "lr=0"])
    assert "--set: lr:" in message and "positive" in message


def test_summary_reads_progress_and_the_best_trial(tmp_path: Path) -> None:
    row = {"trial_id": "a", "method": "z_loss", "lr": 1e-3, "status": "TERMINATED", "best_val_loss": 2.0,
           "best_step": 8, "config_hash": "h"}  # fmt: skip
    results.write_trials(str(tmp_path), [row])
    results.write_progress(str(tmp_path), {"sweep_id": "s", "status": "SUCCEEDED", "counts": {"TERMINATED": 1},
                                           "best": best_record(row)})  # fmt: skip
    out = summary(str(tmp_path))
    assert out["status"] == "SUCCEEDED" and out["best"]["step"] == 8 and out["best"]["config_hash"] == "h"


def test_presets_memory_table_is_the_one_in_the_docs() -> None:
    out = runner.invoke(app, ["presets", "--memory"])
    assert out.exit_code == 0, out.output
    docs = (Path(__file__).parents[2] / "docs" / "gpu.md").read_text()
    table = [line for line in out.output.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5 * 3  # header, rule, five sizes x (1, 2, 4) workers
    assert "\n".join(table) in docs  # docs/gpu.md shows the command's output, not a hand-typed copy
    rows = json.loads(runner.invoke(app, ["presets", "--memory", "--json"]).output)
    one_gpu_16m = next(r for r in rows if r["model"] == "oec-16m" and r["workers"] == 1)
    assert one_gpu_16m["80 GB"] == {"micro_steps": 2, "micro_batch": 32} and one_gpu_16m["estimate_gib"] > 79
