"""TensorBoard: one event directory per trial, ``<sweep dir>/tensorboard/<trial id>/``, written with
tensorboardX (a dependency of Ray Tune, so on by default). Every evaluation's metrics at the trial's
step, and again under ``by_tokens/`` at its token count (TensorBoard has one x axis per tag); at the
end, the trial's parameters and final result in the HParams dashboard, to filter by method and LR."""

from __future__ import annotations

import json
from typing import Any

from ray.tune.logger import LoggerCallback

from search_spaces.run import storage
from search_spaces.run.tracking.trial_record import STATUS_TAG, TrialRecords, evaluation_metrics

#: The event directories' parent inside the sweep dir (``tensorboard --logdir <sweep dir>/tensorboard``).
TENSORBOARD_DIR = "tensorboard"
TOKENS_PREFIX = "by_tokens/"


class TensorboardBridge(LoggerCallback):
    def __init__(self, records: TrialRecords, sweep_dir: str) -> None:
        self.records = records
        self.logdir = storage.join(sweep_dir, TENSORBOARD_DIR)
        self._writers: dict[Any, Any] = {}
        self._last: dict[Any, dict[str, float]] = {}

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self._writers = {}
        self._last = {}

    def state(self) -> dict[str, Any]:
        return {"logdir": self.logdir}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_writers": {}, "_last": {}}

    def log_trial_start(self, trial: Any) -> None:
        from tensorboardX import SummaryWriter

        record = self.records.of(trial)
        writer = SummaryWriter(storage.join(self.logdir, record.trial_id), flush_secs=10)
        writer.add_text("config", "```\n" + json.dumps({**record.tags(), **record.all_params()}, indent=1) + "\n```")
        self._writers[trial] = writer

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        writer = self._writers.get(trial)
        if writer is None or result.get("replayed"):
            return
        metrics = evaluation_metrics(result)
        step = int(result.get("step") or iteration)
        tokens = metrics.get("tokens")
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)
            if tokens is not None:
                writer.add_scalar(TOKENS_PREFIX + key, value, int(tokens))
        self._last[trial] = metrics

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        writer = self._writers.pop(trial, None)
        if writer is None:
            return
        record = self.records.of(trial)
        state = self.records.final_state(trial, failed=failed)
        hparams = {k: v for k, v in record.params.items() if isinstance(v, int | float | str)}
        hparams[STATUS_TAG] = state["status"]
        last = self._last.pop(trial, {})
        final = {f"final/{k}": last[k] for k in ("val_loss", "train_loss") if k in last}
        final["final/diverged_step"] = float(state.get("diverged_step", -1))
        writer.add_hparams(hparams, final, name="hparams")
        writer.close()
