"""A sweep spec plus one trial's parameters → the ``TrainConfig`` of that trial (torch-free).

The spec is resolved once, by the driver, into a ``TrialPlan``: the ``TrainConfig`` every trial shares
(model, data, budget, precision) and the ``Resources`` of one trial. A trial adds only its method,
coefficients, learning rate and seed; it never sees, nor re-validates, the whole spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from search_spaces.spec.sweep_spec import SweepSpec
from trainables.losses.config import LossConfig
from trainables.losses.registry import COEFFICIENTS
from trainables.train.config import DataConfig, DivergenceConfig, OptimConfig, TrainConfig
from trainables.train.trainer import Resources

PARAM_KEYS = ("method", "lr", *COEFFICIENTS, "seed")


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat trial parameters of a Tune config: grid/random trials carry them under ``params``,
    TPE trials at the top level."""
    source = config.get("params", config)
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
        base = TrainConfig(
            model=spec.model.preset,
            model_overrides=dict(spec.model.overrides),
            data=DataConfig(
                corpus=spec.data.corpus,
                tokenizer=spec.data.tokenizer,
                seq_len=spec.data.seq_len,
                batch_size=spec.data.batch_size,
                eval_tokens=spec.data.eval_tokens,
                test_tokens=spec.test_tokens(),
                sampling=spec.data.sampling,
            ),
            optim=OptimConfig(warmup_steps=spec.warmup_steps()),
            divergence=DivergenceConfig(**spec.divergence.model_dump()),
            steps=spec.total_steps(),
            eval_interval=spec.eval_interval(),
            test_interval=spec.test_interval(),
            seed=spec.seeds[0],
            precision=spec.precision,
            head_precision=spec.head_precision,
            allow_tf32=spec.allow_tf32,
            compile=spec.compile,
            use_gpu=spec.resources.gpus_per_worker > 0,
        )
        return cls(base=base, resources=spec.resources.resources(), method=spec.methods[0], min_lr=spec.budget.min_lr)

    def config(self, params: Mapping[str, Any]) -> TrainConfig:
        """The run of one trial: the shared config with the trial's method, coefficients, learning rate
        and seed."""
        lr = float(params["lr"])
        coefficients = {k: float(params[k]) for k in COEFFICIENTS if params.get(k) is not None}
        return dataclasses.replace(
            self.base,
            optim=dataclasses.replace(self.base.optim, lr=lr, min_lr=min(self.min_lr, lr)),
            loss=LossConfig.from_method(str(params.get("method") or self.method), coefficients),
            seed=int(params.get("seed", self.base.seed)),
        )


def train_config(spec: SweepSpec, params: Mapping[str, Any]) -> TrainConfig:
    """``TrialPlan.from_spec(spec).config(params)``: one trial's run, from the spec."""
    return TrialPlan.from_spec(spec).config(params)
