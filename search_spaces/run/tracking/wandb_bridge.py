"""Weights & Biases: Ray Tune's ``WandbLoggerCallback`` (one logging actor per trial) with the sweep's
shape: each trial a run of the project, grouped by sweep id, whose id is the trial's fixed
``<sweep id>-<trial id>`` (``resume="allow"``: a restarted driver continues the same run), config =
``trial_record``'s parameters and tags, one history row per evaluation at the trial's step, and its
final status in the config. ``mode: offline`` writes the runs under the sweep dir's ``wandb/`` for
``wandb sync`` and needs neither network nor key."""

from __future__ import annotations

import os
from typing import Any

import ray
from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem

from search_spaces.run import storage
from search_spaces.run.tracking.trial_record import STATUS_TAG, TrialRecords, evaluation_metrics
from search_spaces.spec.tracking_spec import WandbTracking

#: Where offline runs go inside a local sweep dir.
WANDB_DIR = "wandb"


class WandbBridge(WandbLoggerCallback):
    def __init__(self, settings: WandbTracking, records: TrialRecords, sweep_dir: str) -> None:
        init: dict[str, Any] = {"mode": settings.mode, "resume": "allow"}
        if settings.entity:
            init["entity"] = settings.entity
        if not storage.is_uri(sweep_dir):
            init["dir"] = str(storage.local_path(storage.join(sweep_dir, WANDB_DIR)))
        super().__init__(project=settings.project, group=records.sweep_id, **init)
        self.settings = settings
        self.records = records

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if self.settings.mode == "offline":
            os.environ["WANDB_MODE"] = "offline"  # Ray's key check is skipped only so
        if self.settings.base_url:
            os.environ["WANDB_BASE_URL"] = self.settings.base_url
        if "dir" in self.kwargs:
            os.makedirs(self.kwargs["dir"], exist_ok=True)
        super().setup(*args, **kwargs)

    def state(self) -> dict[str, Any]:
        return {"project": self.project, "mode": self.settings.mode, "dir": self.kwargs.get("dir")}

    def log_trial_start(self, trial: Any) -> None:
        record = self.records.of(trial)
        self._start_logging_actor(
            trial,
            [*self._exclude_results, "config"],
            **{
                "id": record.run_id,
                "name": record.run_name,
                "reinit": True,
                "allow_val_change": True,
                "group": self.group,
                "project": self.project,
                "config": {**record.all_params(), **record.tags()},
                "tags": [str(record.params.get("method", ""))],
                **self.kwargs,
            },
        )

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if result.get("replayed"):
            return  # a finished trial's final report, replayed after a restart: already logged
        step = int(result.get("step") or iteration)
        # The logging actor logs each row at its training_iteration: the trial's own step here.
        super().log_trial_result(iteration, trial, {**evaluation_metrics(result), TRAINING_ITERATION: step})

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if trial in self._trial_queues:
            state = self.records.final_state(trial, failed=failed)
            step = int((trial.last_result or {}).get("step") or 0)
            final = {STATUS_TAG: state.pop("status"), **state}
            self._trial_queues[trial].put((_QueueItem.RESULT, {"config": final, TRAINING_ITERATION: step}))
        super().log_trial_end(trial, failed)

    def _cleanup_logging_actors(self, timeout: int = 0, kill_on_timeout: bool = False) -> None:
        futures = list(self._trial_logging_futures.values())
        done, _ = ray.wait(futures, num_returns=len(futures), timeout=timeout)
        for future in done:
            try:
                ray.get(future)
            except Exception as exc:  # wandb.init or a log call failed inside the actor
                self.report_failure(exc)
        super()._cleanup_logging_actors(timeout=0, kill_on_timeout=kill_on_timeout)
