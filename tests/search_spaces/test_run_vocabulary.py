"""Each run setting is declared once (a config dataclass field with ``setting`` metadata); the sweep
spec's fields and the run commands' options are that declaration, with the same defaults and ranges."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lossweep.cli.train_options import FlagError, RunFlags, build_train_config, run_flags
from search_spaces.spec.setting_fields import run_settings
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.translate import TrialPlan
from trainables.train.config import TrainConfig


def _section(spec: SweepSpec, section: str) -> object:
    return getattr(spec, section) if section else spec


def test_spec_fields_are_the_declared_settings_with_their_defaults() -> None:
    spec = SweepSpec()
    declared = [s for s in run_settings().values() if s.info.spec is not None]
    assert declared, "no setting declares a spec section"
    for s in declared:
        model = type(_section(spec, s.info.spec))
        field = model.model_fields[s.name]
        assert field.default == s.default, s.path
        assert field.description == s.help, s.path


def test_spec_and_flags_refuse_what_the_declaration_refuses() -> None:
    with pytest.raises(ValidationError, match="seq_len"):
        SweepSpec.model_validate({"data": {"seq_len": 1}})
    with pytest.raises(ValidationError, match="sustained_evals"):
        SweepSpec.model_validate({"divergence": {"sustained_evals": -1}})
    flags = {f.param: f.setting.default for f in run_flags()}
    with pytest.raises(FlagError, match="--seq-len: must be >= 2, got 1"):
        build_train_config(RunFlags({**flags, "seq_len": 1}))


def test_a_spec_and_the_flags_left_alone_make_the_same_run() -> None:
    """Defaults agree: the spec's trial and the command line's run differ only where a spec has no
    such setting (its lr, seeds and budget are its own)."""
    flags = {f.param: f.setting.default for f in run_flags()}
    from_flags = build_train_config(RunFlags(flags))
    from_spec = TrialPlan.from_spec(SweepSpec()).config({"lr": from_flags.optim.lr, "method": "baseline"})
    assert from_spec.to_dict() == from_flags.to_dict()
    assert from_flags.optim.warmup_steps == from_flags.steps // 20  # 5 % of the steps, both ways
    assert TrainConfig().to_dict() == from_flags.to_dict()
