"""A sweep spec plus one trial's parameters → the ``TrainConfig`` of that trial (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_spaces.spec import COEFFICIENTS, SweepSpec
from trainables.config import DataConfig, DivergenceConfig, OptimConfig, TrainConfig
from trainables.losses.config import LossConfig

PARAM_KEYS = ("method", "lr", *COEFFICIENTS, "seed")


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat trial parameters of a Tune config: grid/random trials carry them under ``params``,
    TPE trials at the top level."""
    source = config.get("params", config)
    return {k: source[k] for k in PARAM_KEYS if source.get(k) is not None}


def train_config(spec: SweepSpec, params: Mapping[str, Any]) -> TrainConfig:
    """The run of one trial: the spec's model, data and budget with the trial's method, coefficients,
    learning rate and seed."""
    method = str(params.get("method") or spec.methods[0])
    coefficients = {k: float(params[k]) for k in COEFFICIENTS if params.get(k) is not None}
    return TrainConfig(
        model=spec.model.preset,
        model_overrides=dict(spec.model.overrides),
        data=DataConfig(
            corpus=spec.data.corpus,
            tokenizer=spec.data.tokenizer,
            seq_len=spec.data.seq_len,
            batch_size=spec.data.batch_size,
            eval_batches=spec.data.eval_batches,
        ),
        optim=OptimConfig(
            lr=float(params["lr"]),
            min_lr=min(spec.budget.min_lr, float(params["lr"])),
            warmup_steps=spec.budget.warmup_steps,
        ),
        loss=LossConfig.from_method(method, coefficients),
        divergence=DivergenceConfig(**spec.divergence.model_dump()),
        steps=spec.total_steps(),
        eval_interval=spec.budget.eval_interval,
        seed=int(params.get("seed", spec.seeds[0])),
        precision=spec.precision,
        head_precision=spec.head_precision,
        allow_tf32=spec.allow_tf32,
        use_gpu=spec.resources.gpus_per_worker > 0,
    )
