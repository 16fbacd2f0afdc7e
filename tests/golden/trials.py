"""The trials of two tiny sweeps, computed through the driver's own path minus Ray: the spec's trial
list (grid) or Optuna's TPE sampler over the spec's define-by-run space, the ``TrialPlan`` that turns
a trial's parameters into its ``TrainConfig``, and the training engine a Ray worker runs (one rank,
the same reducer). Every column kept is deterministic for a fixed seed.

``python -m tests.golden.trials`` rewrites the recorded tables (only when a change of results is meant).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from search_spaces.spec.presets import get_preset
from search_spaces.spec.spaces import define_by_run, explicit_trials
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.translate import TrialPlan, trial_params

GOLDEN_DIR = Path(__file__).parent
TINY_SCALE: dict[str, Any] = {
    "steps": 6,
    "warmup_steps": 1,
    "eval_interval": 3,
    "seq_len": 32,
    "batch_size": 4,
    "eval_tokens": 32,
    "test_tokens": 64,
}
#: The metrics of a trial's last report that depend on nothing but its config and seed.
RESULT_KEYS = ("step", "tokens", "lr", "val_loss", "train_loss", "diverged", "diverged_step", "above_l0_step", "l0")
CONFIG_KEYS = ("steps", "eval_interval", "seed", "precision")


def golden_specs() -> dict[str, SweepSpec]:
    tpe = get_preset("simreg-tpe", **TINY_SCALE)
    tpe = SweepSpec.model_validate(
        {**tpe.model_dump(), "search": {"algorithm": "tpe", "num_samples": 4, "startup_trials": 2}}
    )
    return {"demo": get_preset("demo", **TINY_SCALE), "simreg-tpe": tpe}


def _train(plan: TrialPlan, params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from trainables.train.engine import TrainingRun
    from trainables.train.reduce import IdentityReducer, NanSafeMaxReducer

    torch.set_num_threads(1)
    config = plan.config(params)
    final = TrainingRun(config, device="cpu", reducer=NanSafeMaxReducer(IdentityReducer())).run(lambda _: None)
    row = {k: final.get(k) for k in RESULT_KEYS}
    row.update({k: getattr(config, k) for k in CONFIG_KEYS})
    row.update(
        warmup_steps=config.optim.warmup_steps,
        min_lr=config.optim.min_lr,
        peak_lr=config.optim.lr,
        loss=config.loss.to_dict(),
    )
    return row


def trials_table(spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per trial, in the order the driver creates them (TPE: one at a time, as with one
    concurrent trial)."""
    plan = TrialPlan.from_spec(spec)
    rows: list[dict[str, Any]] = []
    if spec.search.algorithm != "tpe":
        for params in explicit_trials(spec):
            flat = trial_params({"params": params})
            rows.append({"params": flat, **_train(plan, flat)})
        return rows
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=spec.search.seed, n_startup_trials=spec.search.startup_trials)
    study = optuna.create_study(sampler=sampler, direction=spec.objective.mode + "imize")
    space = define_by_run(spec)
    for _ in range(spec.search.num_samples):
        trial = study.ask()
        constants = space(trial)
        flat = trial_params({**trial.params, **constants})
        row = {"params": flat, **_train(plan, flat)}
        study.tell(trial, row["val_loss"])
        rows.append(row)
    return rows


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def main() -> int:
    for name, spec in golden_specs().items():
        golden_path(name).write_text(json.dumps(trials_table(spec), indent=1, sort_keys=True) + "\n")
        print(f"wrote {golden_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
