"""MLflow: Ray Tune's ``MLflowLoggerCallback`` with the sweep's shape. The sweep is one parent run (its
report and best configuration as artefacts); each trial a nested run carrying ``trial_record``'s
parameters and tags, a metric point per evaluation at its step (``tokens`` logged beside it, so the UI
can plot against either), and its final status. Runs are found again by their tags when the driver
restarts, so a restart resumes them instead of creating new ones."""

from __future__ import annotations

import os
import time
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from search_spaces.run.tracking.sweep_artifacts import sweep_artifacts
from search_spaces.run.tracking.trial_record import (
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    TRIAL_ID_TAG,
    TrialRecords,
    evaluation_metrics,
)
from search_spaces.spec.tracking_spec import MlflowTracking

#: A tracker that cannot be reached costs the sweep seconds, not MLflow's default minutes of retries.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}  # fmt: skip
_BATCH = 100  # MLflow's limit of parameters per log_batch call


class MlflowBridge(MLflowLoggerCallback):
    def __init__(self, settings: MlflowTracking, records: TrialRecords, sweep_dir: str) -> None:
        super().__init__(tracking_uri=settings.tracking_uri, experiment_name=settings.experiment_name)
        self.records = records
        self.sweep_dir = sweep_dir
        self.parent_run_id: str | None = None

    @property
    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        super().setup(*args, **kwargs)
        sweep_id = self.records.sweep_id
        experiment = self.mlflow_util.experiment_id
        found = self.client.search_runs(
            [experiment], filter_string=f"tags.`{SWEEP_ID_TAG}` = '{sweep_id}'", max_results=10000
        )
        self._known = {r.data.tags.get(TRIAL_ID_TAG): r.info.run_id for r in found if TRIAL_ID_TAG in r.data.tags}
        parents = [r.info.run_id for r in found if r.data.tags.get(ROLE_TAG) == "sweep"]
        if parents:
            self.parent_run_id = parents[0]
            self.client.update_run(self.parent_run_id, status="RUNNING")
        else:
            spec = self.records.spec
            run = self.client.create_run(
                experiment, run_name=sweep_id, tags={SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep", "sweep_name": spec.name}
            )
            self.parent_run_id = run.info.run_id
            self._log_params(self.parent_run_id, {"sweep_id": sweep_id, "name": spec.name,
                                                  "num_trials": spec.num_trials(), "search": spec.search.algorithm})

    def state(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "experiment_id": self.mlflow_util.experiment_id,
                "parent_run_id": self.parent_run_id}  # fmt: skip

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, params=items[i : i + _BATCH])

    def log_trial_start(self, trial: Any) -> None:
        record = self.records.of(trial)
        run_id = self._known.get(record.trial_id)
        if run_id is None:
            tags = {**record.tags(), "mlflow.parentRunId": self.parent_run_id}
            run = self.client.create_run(self.mlflow_util.experiment_id, run_name=record.run_name, tags=tags)
            run_id = run.info.run_id
            self._known[record.trial_id] = run_id
            self._log_params(run_id, record.all_params())
        else:
            self.client.update_run(run_id, status="RUNNING")
        self._trial_runs[trial] = run_id

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        if result.get("replayed") or trial not in self._trial_runs:
            return  # a finished trial's final report, replayed after a restart: already logged
        step = int(result.get("step") or iteration)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in evaluation_metrics(result).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self._trial_runs[trial], metrics=metrics[i : i + 1000])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run_id = self._trial_runs.get(trial)
        if run_id is None:
            return
        state = self.records.final_state(trial, failed=failed)
        self.client.set_tag(run_id, STATUS_TAG, state["status"])
        if "diverged_cause" in state:
            self.client.set_tag(run_id, "diverged_cause", state["diverged_cause"])
            self.client.log_metric(run_id, "diverged_step", state["diverged_step"])
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.parent_run_id is None:
            return
        for name, text in sweep_artifacts(self.sweep_dir, self.records.spec).items():
            self.client.log_text(self.parent_run_id, text, name)
        self.client.set_terminated(self.parent_run_id, "FINISHED")
