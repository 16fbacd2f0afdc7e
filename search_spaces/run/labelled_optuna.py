"""Ray Tune's ``OptunaSearch`` whose Optuna trials also carry, as user attributes, the method,
coefficients, LR and seed of the Tune trial (fixed ones too, which are no Optuna parameters), its Tune
trial id and the sweep id: what an optuna-dashboard user filters and groups by (docs/tracking.md).

Its Tune configs put the parameters under ``params``, the shape grid and random trials have
(``translate.trial_params``). Optuna's own parameter names stay flat, so the study, its dashboard and
the resume of an existing ``optuna.db`` see the names they always had."""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from search_spaces.spec.translate import PARAMS_KEY, trial_params


class LabelledOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, sweep_id: str, default_method: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sweep_id = sweep_id
        self.default_method = default_method

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = super().suggest(trial_id)
        if not isinstance(config, dict):
            return config  # None (no more trials for now) or Searcher.FINISHED
        wrapped = {PARAMS_KEY: config}
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            attrs = {"method": self.default_method, **trial_params(wrapped)}
            for key, value in {**attrs, "tune_trial_id": trial_id, "sweep_id": self.sweep_id}.items():
                ot_trial.set_user_attr(key, value)
        return wrapped
