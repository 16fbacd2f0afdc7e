"""What every tracker records of a trial, said once: its parameters (method, coefficients, LR, seed
and the whole resolved config), its tags (sweep id, trial id, config hash), the metrics of each
evaluation and its final state (status; step and cause when it diverged)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search_spaces.run.results import metric_row
from search_spaces.run.sweep_dir import final_trial_status
from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.translate import TrialPlan, trial_params

#: Tag keys (MLflow tags; W&B config keys; TensorBoard hparams) the trackers share.
SWEEP_ID_TAG = "lossweep.sweep_id"
TRIAL_ID_TAG = "lossweep.trial_id"
CONFIG_HASH_TAG = "lossweep.config_hash"
STATUS_TAG = "lossweep.status"
ROLE_TAG = "lossweep.role"  # "sweep" (the parent run) or "trial"
#: Metrics a trial reports besides the documented ones: its final test-split result, whatever it names.
TEST_PREFIX = "test_"


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested document as ``{"a.b": value}``."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def evaluation_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric metrics of one report: the documented ones (``results.metric_row``: CE, term
    values, ‖μ‖, logit statistics, tokens/s…) and ``test_*``."""
    row = {**metric_row("", result), **{k: v for k, v in result.items() if k.startswith(TEST_PREFIX)}}
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        out[key] = float(value)
    return out


@dataclass(frozen=True)
class TrialRecord:
    sweep_id: str
    trial_id: str
    params: dict[str, Any]  # method, lr, coefficients, seed
    config: dict[str, Any]  # the resolved TrainConfig, flattened
    config_hash: str

    @property
    def run_name(self) -> str:
        """``<sweep id>-<trial id>``, as the Ray dashboard names the trial's Train run."""
        return f"{self.sweep_id}-{self.trial_id}"

    @property
    def run_id(self) -> str:
        """A tracker run id that is the same every time the driver (re)starts: resume by id, never twice."""
        name = re.sub(r"[^A-Za-z0-9_-]", "-", self.run_name)
        return name[:64]

    def tags(self) -> dict[str, str]:
        return {
            SWEEP_ID_TAG: self.sweep_id,
            TRIAL_ID_TAG: self.trial_id,
            CONFIG_HASH_TAG: self.config_hash,
            ROLE_TAG: "trial",
            "method": str(self.params.get("method", "")),
        }

    def all_params(self) -> dict[str, Any]:
        """The trial's parameters, then its whole resolved config under ``config.``."""
        return {**self.params, **{f"config.{k}": v for k, v in self.config.items()}}


class TrialRecords:
    """Builds (and keeps) the record of each trial of one sweep from its Tune config."""

    def __init__(self, spec_doc: Mapping[str, Any], sweep_id: str) -> None:
        self.spec_doc = dict(spec_doc)
        self.sweep_id = sweep_id
        self._records: dict[str, TrialRecord] = {}

    @property
    def spec(self) -> SweepSpec:
        if not hasattr(self, "_spec"):
            self._spec = SweepSpec.model_validate(self.spec_doc)
        return self._spec

    def __getstate__(self) -> dict[str, Any]:
        return {"spec_doc": self.spec_doc, "sweep_id": self.sweep_id, "_records": {}}

    def of(self, trial: Any) -> TrialRecord:
        tid = str(trial.trial_id)
        if tid not in self._records:
            params = trial_params(trial.config)
            params.setdefault("method", self.spec.methods[0])
            config = TrialPlan.from_spec(self.spec).config(params)
            self._records[tid] = TrialRecord(
                sweep_id=self.sweep_id,
                trial_id=tid,
                params=params,
                config=flatten(config.to_dict()),
                config_hash=config.config_hash(),
            )
        return self._records[tid]

    def final_state(self, trial: Any, *, failed: bool) -> dict[str, Any]:
        """``status`` (a trial status of the sweep-dir contract) and, for a diverged trial, the
        ``diverged_step`` and ``diverged_cause``."""
        last = dict(getattr(trial, "last_result", None) or {})
        status = "ERROR" if failed else final_trial_status(last, self.spec.total_steps())
        state: dict[str, Any] = {"status": status}
        if status == "DIVERGED":
            step = last.get("diverged_step")
            state["diverged_step"] = int(step if step is not None and step >= 0 else last.get("step") or 0)
            state["diverged_cause"] = str(last.get("diverged_cause") or "")
        return state
