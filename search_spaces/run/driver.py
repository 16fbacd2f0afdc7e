"""The pieces of a sweep's Tune run: the function trainable (one trial = one Ray Train run), the search
algorithm and scheduler a spec asks for, and the ``Tuner`` (new, or restored from the sweep dir).

Search: grid and random specs expand to an explicit trial list (``search_spaces.spec.spaces``) handed to
Tune's default ``BasicVariantGenerator`` as one ``grid_search`` axis, so the list (and what already
ran) is part of Tune's experiment state and ``Tuner.restore`` never repeats a finished trial. TPE
uses ``OptunaSearch`` (its trials labelled for optuna-dashboard: ``labelled_optuna``) over the define-by-run
space with a seeded ``TPESampler`` and an SQLite RDB storage in the sweep dir (``optuna.db``, study
``lossweep-<sweep id>``; for a remote sweep dir the database lives in the local cache, as SQLite cannot
live on an object store), or the RDB URL in ``$LOSSWEEP_OPTUNA_STORAGE``.

Confirm: after the search, an explicit trial list (the best configurations of every method on the
confirm seeds, ``search_spaces.analysis.confirm``) runs as a second Tune experiment in ``tune-confirm/``,
without early stopping, so either stage restores on its own.

Early stopping: ASHA on the worker-reported ``tokens`` counter (``training_iteration`` restarts at 1
after a restore). Diverged trials stop themselves: the loop reports ``diverged=1`` with a finite
sentinel and returns, whatever the scheduler.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from search_spaces.run import storage
from search_spaces.run.sweep_dir import CONFIRM_TUNE_DIR, OPTUNA_DB, RUNS_DIR, TRIAL_RESULT_FILE, TRIALS_DIR, TUNE_DIR
from search_spaces.spec.spaces import define_by_run, explicit_trials
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.translate import PARAMS_KEY, TrialPlan, trial_params
from trainables.data.cache import default_cache_root

#: The custom resource clusters started by lossweep declare; one per concurrently running trial driver.
TRIAL_DRIVER_RESOURCE = "trial_driver"
_TUNE_KEYS = frozenset({"checkpoint_path", "run_path", "done", "training_iteration", "trial_id"})


def make_trainable(plan: TrialPlan, sweep_dir: str, *, lean: bool = True) -> Callable[[dict[str, Any]], None]:
    """The Tune function trainable: resolves the trial's ``TrainConfig`` from the sweep's ``plan`` and
    the trial's parameters and runs it with ``trainables.train.trainer.fit`` (``lean`` as there), forwarding
    the workers' reports to Tune."""

    def lossweep_trial(config: dict[str, Any]) -> None:
        from ray import tune

        from search_spaces.run.report_forwarding import fit_reporting_to_tune
        from trainables.train.trainer import fit

        trial_id = tune.get_context().get_trial_id()
        cfg = plan.config(trial_params(config))
        resources = plan.resources
        done_path = storage.join(sweep_dir, TRIALS_DIR, trial_id, TRIAL_RESULT_FILE)
        if storage.exists(done_path):
            # Finished before the driver was interrupted, after Tune's last experiment snapshot: Tune
            # thinks it unfinished. Replay the recorded final report instead of training again.
            tune.report({**json.loads(storage.read_bytes(done_path)), "replayed": 1})
            return
        manifest_dir = None if storage.is_uri(sweep_dir) else storage.join(sweep_dir, TRIALS_DIR, trial_id)
        final = fit_reporting_to_tune(
            lambda callbacks: fit(
                cfg,
                resources,
                # <sweep id>-<trial id>: the dashboard's pages and the exported metrics' tags name the trial.
                name=f"{storage.basename(sweep_dir)}-{trial_id}",
                storage_path=storage.join(sweep_dir, RUNS_DIR),
                callbacks=callbacks,
                manifest_dir=manifest_dir,
                lean=lean,
            )
        )
        plain = {k: v for k, v in final.items() if isinstance(v, str | int | float | bool) and k not in _TUNE_KEYS}
        storage.write_bytes(done_path, json.dumps(plain).encode())

    return lossweep_trial


#: An RDB URL (e.g. PostgreSQL) for every sweep's Optuna study instead of the sweep dir's SQLite file.
OPTUNA_STORAGE_ENV = "LOSSWEEP_OPTUNA_STORAGE"


def optuna_storage_url(sweep_dir: str, sweep_id: str) -> str:
    """Where the sweep's Optuna study lives: ``$LOSSWEEP_OPTUNA_STORAGE`` when set, else ``optuna.db`` in
    the sweep dir (in the local cache for a remote sweep dir: SQLite cannot live on an object store)."""
    if os.environ.get(OPTUNA_STORAGE_ENV):
        return os.environ[OPTUNA_STORAGE_ENV]
    if storage.is_uri(sweep_dir):
        cache = default_cache_root() / "optuna"
        cache.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{cache / (sweep_id + '.db')}"
    return f"sqlite:///{storage.join(sweep_dir, OPTUNA_DB)}"


def search_setup(spec: SweepSpec, sweep_dir: str, sweep_id: str) -> tuple[Any, dict[str, Any], int]:
    """``(search_alg or None, param_space, num_samples)`` for the Tuner."""
    from ray import tune

    if spec.search.algorithm in ("grid", "random"):
        return None, {PARAMS_KEY: tune.grid_search(explicit_trials(spec))}, 1
    import optuna

    from search_spaces.run.labelled_optuna import LabelledOptunaSearch

    sampler = optuna.samplers.TPESampler(seed=spec.search.seed, n_startup_trials=spec.search.startup_trials)
    search = LabelledOptunaSearch(
        sweep_id=sweep_id,
        default_method=spec.methods[0],
        space=define_by_run(spec),
        metric=spec.objective.metric,
        mode=spec.objective.mode,
        sampler=sampler,
        storage=optuna.storages.RDBStorage(optuna_storage_url(sweep_dir, sweep_id)),
        study_name=f"lossweep-{sweep_id}",
    )
    return search, {}, spec.search.num_samples


def scheduler_for(spec: SweepSpec) -> Any:
    if spec.scheduler.name == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    budget = spec.total_tokens()
    grace = spec.scheduler.grace_period or max(1, budget // 9)
    return ASHAScheduler(
        time_attr="tokens",
        # One past the budget: ASHA stops a trial whose time_attr reaches max_t, which would end a
        # trial at its last report from outside instead of letting it finish (and record its result).
        max_t=budget + 1,
        grace_period=min(grace, budget),
        reduction_factor=spec.scheduler.reduction_factor,
    )


def reuse_trial_actors(spec: SweepSpec, *, lean: bool) -> bool:
    """Whether a trial's driver process (Tune's function-trainable actor) runs the next trial too.

    Reuse saves every trial after the first a process start and its imports (Ray Tune, torch, the
    trainables). Only without a scheduler: a trial a scheduler stops (ASHA) must take its Train run
    with it, and what ends that run is Ray ending the trial's actor, which owns the run's controller.
    Off unless ``lean`` (``trainables.train.startup.lean_trials``: ``LOSSWEEP_LEAN_TRIALS=0`` turns it off).
    """
    return lean and spec.scheduler.name == "none"


def _tuner(
    spec: SweepSpec,
    sweep_dir: str,
    name: str,
    callbacks: list[Any],
    *,
    lean: bool,
    param_space: dict[str, Any] | None,
    tune_config: dict[str, Any],
) -> tuple[Any, bool]:
    """``(tuner, resumed)`` of one stage (its experiment folder ``name`` in the sweep dir): the stage's
    interrupted run restored when there is one, else a new Tuner with ``tune_config``. Both stages run the
    same trainable: the spec's ``TrialPlan`` with one trial-driver slot per trial."""
    from ray import tune

    trainable = make_trainable(TrialPlan.from_spec(spec), sweep_dir, lean=lean)
    trainable = tune.with_resources(trainable, {"CPU": 0, TRIAL_DRIVER_RESOURCE: 1})
    experiment = storage.join(sweep_dir, name)
    if tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(
            experiment,
            trainable=trainable,
            param_space=param_space or None,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
        return tuner, True
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.objective.metric,
            mode=spec.objective.mode,
            max_concurrent_trials=spec.max_concurrent_trials,
            **tune_config,
        ),
        run_config=_run_config(sweep_dir, name, callbacks),
    )
    return tuner, False


def build_tuner(spec: SweepSpec, sweep_dir: str, sweep_id: str, callbacks: list[Any]) -> tuple[Any, bool]:
    """``(tuner, resumed)`` of the search stage: a restored Tuner when ``sweep_dir`` holds an interrupted
    run, else a new one with the spec's search algorithm and scheduler."""
    from trainables.train.startup import lean_trials

    lean = lean_trials()
    search, param_space, num_samples = search_setup(spec, sweep_dir, sweep_id)
    return _tuner(
        spec, sweep_dir, TUNE_DIR, callbacks, lean=lean, param_space=param_space,
        tune_config={"search_alg": search, "scheduler": scheduler_for(spec), "num_samples": num_samples,
                     "reuse_actors": reuse_trial_actors(spec, lean=lean)},
    )  # fmt: skip


def _run_config(sweep_dir: str, name: str, callbacks: list[Any]) -> Any:
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=sweep_dir,
        callbacks=callbacks,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=0),
    )


def confirm_params(spec: SweepSpec, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The confirm stage's trials: every selected configuration on every confirm seed."""
    seeds = spec.confirm.seeds if spec.confirm is not None else []
    return [{**config, "seed": seed} for config in configs for seed in seeds]


def build_confirm_tuner(
    spec: SweepSpec, sweep_dir: str, trials: list[dict[str, Any]], callbacks: list[Any]
) -> tuple[Any, bool]:
    """``(tuner, resumed)`` of the confirm stage over the explicit ``trials`` (:func:`confirm_params`):
    no search algorithm, no early stopping (every confirm run goes to the end of its budget)."""
    from ray import tune

    from trainables.train.startup import lean_trials

    lean = lean_trials()
    return _tuner(
        spec, sweep_dir, CONFIRM_TUNE_DIR, callbacks, lean=lean, param_space={PARAMS_KEY: tune.grid_search(trials)},
        tune_config={"num_samples": 1, "reuse_actors": lean},
    )  # fmt: skip
