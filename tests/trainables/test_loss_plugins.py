"""Loss terms from installed packages (entry-point group ``lossweep.losses``): the example package of
docs/losses.md installed into a directory on ``PYTHONPATH`` works like a built-in term, and a broken
plugin stops lossweep with an error that names it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from tests.fixtures.loss_plugin import PLUGIN_TERM, install, plugin_env, write_package
from trainables.losses.plugins import GROUP, PluginError, load_plugins
from trainables.losses.registry import TERMS


def _run(code: str, site: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=plugin_env(site), capture_output=True, text=True, timeout=timeout
    )


def test_an_installed_plugin_is_registered_everywhere_without_torch(loss_plugin_site: Path) -> None:
    code = f"""
import json, sys
from trainables.losses.registry import TERMS, COEFFICIENTS, default_coefficients, method_label
from trainables.losses.config import LossConfig
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.spaces import grid_trials
from search_spaces.run.results import TRIAL_COLUMNS
from service.app import create_app  # the service app imports the registry too
term = TERMS[{PLUGIN_TERM!r}]
spec = SweepSpec.model_validate({{"methods": ["baseline", {PLUGIN_TERM!r}], "lr": [1e-3],
    "coefficients": {{"hidden_norm_weight": [1e-3, 1e-2], "hidden_norm_target": 2.0}}}})
cfg = LossConfig.from_cli(["hidden_norm=0.01,target=2"])
print(json.dumps({{
    "source": term.source, "coefficients": list(COEFFICIENTS), "default": default_coefficients()["hidden_norm_weight"],
    "label": method_label("hidden_norm+mu_centering"), "trials": grid_trials(spec),
    "columns": [c for c, _ in TRIAL_COLUMNS], "cli": cfg.to_dict(), "method": cfg.method,
    "torch": "torch" in sys.modules,
}}))
"""
    proc = _run(code, loss_plugin_site)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["source"] == "plugin lossweep-hidden-norm"
    assert out["coefficients"][-2:] == ["hidden_norm_weight", "hidden_norm_target"]  # after the built-ins
    assert out["default"] == 1e-3 and out["label"] == "hidden-norm + μ-centering"
    assert [t for t in out["trials"] if t["method"] == PLUGIN_TERM] == [
        {"method": PLUGIN_TERM, "lr": 1e-3, "hidden_norm_weight": w, "hidden_norm_target": 2.0, "seed": 0}
        for w in (1e-3, 1e-2)
    ]
    assert {"hidden_norm_weight", "hidden_norm_target"} <= set(out["columns"])
    assert out["cli"]["terms"] == [{"name": PLUGIN_TERM, "weight": 0.01, "params": {"target": 2.0}}]
    assert out["torch"] is False, "the declaration or the service imported torch"


def test_the_spec_validates_a_plugin_coefficient(loss_plugin_site: Path) -> None:
    code = """
from search_spaces.spec.sweep_spec import SweepSpec
SweepSpec.model_validate({"methods": ["hidden_norm"], "coefficients": {"hidden_norm_target": 0.0}})
"""
    proc = _run(code, loss_plugin_site)
    assert proc.returncode != 0 and "hidden_norm_target: values must be positive" in proc.stderr


def test_train_local_runs_a_plugin_term(loss_plugin_site: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lossweep.cli.main", "train-local", "--preset", "tiny", "--steps", "3",
         "--batch-size", "4", "--seq-len", "32", "--eval-tokens", "32", "--test-tokens", "64", "--json",
         "--loss", "hidden_norm=0.01,target=2", "--loss", "mu_centering"],
        env=plugin_env(loss_plugin_site), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["term_hidden_norm"] > 0 and summary["steps"] == 3


def test_without_the_package_the_term_is_unknown() -> None:
    assert PLUGIN_TERM not in TERMS  # this test process has no plugin installed


# ------------------------------------------------------------------------------------ broken plugins
_GOOD_DECLARATION = """
from trainables.losses.term import Coefficient, Term
TERM = Term(name="{name}", kind="penalty", label="x", implementation="nowhere",
            coefficients=(Coefficient(name="weight", default=1.0),))
"""


def _entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module_text: str) -> EntryPoint:
    module = f"plugin_{name}_{abs(hash(module_text)) % 10**8}"
    (tmp_path / f"{module}.py").write_text(module_text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return EntryPoint(name=name, value=f"{module}:TERM", group=GROUP)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("z_loss", _GOOD_DECLARATION.format(name="z_loss"), r"'z_loss' is a built-in loss term"),
        ("other", _GOOD_DECLARATION.format(name="mine"), r"entry point's name must be the term's name 'mine'"),
        ("mine", "TERM = {'name': 'mine'}", r"must name a trainables.losses.term.Term, got dict"),
        ("mine", "import no_such_module_anywhere\n", r"import failed: ModuleNotFoundError"),
        ("mine", _GOOD_DECLARATION.format(name="mine").replace('"weight"', '"lam"'), r"first coefficient is 'weight'"),
        ("mine", _GOOD_DECLARATION.format(name="mine").replace("penalty", "regulariser"), r"kind must be one of"),
    ],
)
def test_a_broken_plugin_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, message: str
) -> None:
    ep = _entry_point(tmp_path, monkeypatch, name, text)
    with pytest.raises(PluginError, match=message) as info:
        load_plugins(TERMS, [ep])
    assert f"plugin {name!r} = {ep.value!r}" in str(info.value)


def test_two_plugins_with_one_name_clash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _GOOD_DECLARATION.format(name="mine")
    first = _entry_point(tmp_path, monkeypatch, "mine", text)
    second = _entry_point(tmp_path, monkeypatch, "mine", text + "\n# another copy\n")
    assert list(load_plugins(TERMS, [first])) == ["mine"]
    with pytest.raises(PluginError, match="declared by two plugins"):
        load_plugins(TERMS, [first, second])


def test_a_missing_hook_names_the_term(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hookless_impl.py").write_text("def transform(logits):\n    return logits\n")
    text = _GOOD_DECLARATION.format(name="mine").replace('"nowhere"', '"hookless_impl"')
    term = load_plugins(TERMS, [_entry_point(tmp_path, monkeypatch, "mine", text)])["mine"]
    with pytest.raises(TypeError, match=r"loss term 'mine' \(plugin .*\): hookless_impl has no function 'penalty'"):
        term.hook()
    missing = load_plugins(TERMS, [_entry_point(tmp_path, monkeypatch, "mine", _GOOD_DECLARATION.format(name="mine"))])
    with pytest.raises(ImportError, match=r"loss term 'mine' \(plugin .*\): cannot import 'nowhere'"):
        missing["mine"].hook()


def test_the_cli_reports_a_broken_installed_plugin_in_one_line(tmp_path: Path) -> None:
    package = write_package(
        tmp_path / "src",
        {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "clashing-loss"\nversion = "0.0.1"\n'
            '[project.entry-points."lossweep.losses"]\nz_loss = "clashing_loss:TERM"\n'
            "[tool.setuptools]\npy-modules = ['clashing_loss']\n",
            "clashing_loss.py": _GOOD_DECLARATION.format(name="z_loss"),
        },
    )
    site = install(package, tmp_path / "site")
    proc = subprocess.run(
        [sys.executable, "-m", "lossweep.cli.main", "presets"],
        env=plugin_env(site), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "plugin 'z_loss' = 'clashing_loss:TERM' from clashing-loss 0.0.1" in proc.stderr
    assert "'z_loss' is a built-in loss term" in proc.stderr
