"""A sweep spec plus one trial's parameters → the ``TrainConfig`` of that trial (torch-free).

The spec is resolved once, by the driver, into a ``TrialPlan``: the ``TrainConfig`` every trial shares
(model, data, budget, precision) and the ``Resources`` of one trial. A trial adds only its method,
coefficients, learning rate and seed; it never sees, nor re-validates, the whole spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from search_spaces.spec.setting_fields import run_settings
from search_spaces.spec.sweep_spec import SIZE_PARAM, SweepSpec
from trainables.losses.config import LossConfig
from trainables.losses.registry import COEFFICIENTS
from trainables.train.config import TrainConfig
from trainables.train.settings import put
from trainables.train.trainer import Resources

PARAM_KEYS = ("method", SIZE_PARAM, "lr", *COEFFICIENTS, "seed")
#: Where every Tune trial config (grid, random, TPE, confirm) carries its parameters.
PARAMS_KEY = "params"


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat trial parameters of a Tune config, read from its ``params``. A config without one is
    a TPE trial of a sweep started before TPE configs took that shape (its resume still reads it)."""
    source = config.get(PARAMS_KEY, config)
    return {k: source[k] for k in PARAM_KEYS if source.get(k) is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrialPlan:
    """What every trial of a sweep shares (frozen, picklable: Tune ships it to each trial)."""

    base: TrainConfig  # the spec's model, data, budget and precision; baseline loss, the spec's first seed
    resources: Resources
    method: str  # when a trial's parameters name none (a one-method sweep under TPE)
    min_lr: float  # the schedule's floor, lowered to a trial's peak LR when that is smaller

    @classmethod
    def from_spec(cls, spec: SweepSpec) -> TrialPlan:
        doc: dict[str, Any] = {
            "model": spec.model.presets()[0],
            "model_overrides": dict(spec.model.overrides),
            "steps": spec.total_steps(),
            "seed": spec.seeds[0],
            "use_gpu": spec.resources.gpus_per_worker > 0,
        }
        for s in run_settings().values():
            if s.info.spec is not None:
                section = getattr(spec, s.info.spec) if s.info.spec else spec
                put(doc, s.path, getattr(section, s.name))
        # The budget's settings as one trial runs them: scaled by budget.scale, warmup defaulted.
        put(doc, "optim.warmup_steps", spec.warmup_steps())
        put(doc, "eval_interval", spec.eval_interval())
        put(doc, "test_interval", spec.test_interval())
        put(doc, "data.test_tokens", spec.test_tokens())
        base = TrainConfig.from_dict(doc)
        return cls(base=base, resources=spec.resources.resources(), method=spec.methods[0], min_lr=spec.budget.min_lr)

    def config(self, params: Mapping[str, Any]) -> TrainConfig:
        """The run of one trial: the shared config with the trial's method, coefficients, learning rate,
        seed and, where the size is an axis, model preset."""
        lr = float(params["lr"])
        coefficients = {k: float(params[k]) for k in COEFFICIENTS if params.get(k) is not None}
        return dataclasses.replace(
            self.base,
            model=str(params.get(SIZE_PARAM) or self.base.model),
            optim=dataclasses.replace(self.base.optim, lr=lr, min_lr=min(self.min_lr, lr)),
            loss=LossConfig.from_method(str(params.get("method") or self.method), coefficients),
            seed=int(params.get("seed", self.base.seed)),
        )


def train_config(spec: SweepSpec, params: Mapping[str, Any]) -> TrainConfig:
    """``TrialPlan.from_spec(spec).config(params)``: one trial's run, from the spec."""
    return TrialPlan.from_spec(spec).config(params)
