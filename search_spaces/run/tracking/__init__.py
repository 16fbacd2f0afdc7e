"""Bridges from a sweep's Tune run to the experiment trackers researchers already use (docs/tracking.md).

One module per tracker, each built on the library made for it: Ray Tune's ``MLflowLoggerCallback``
(``mlflow_bridge``), Ray Tune's ``WandbLoggerCallback`` (``wandb_bridge``) and tensorboardX's
``SummaryWriter`` (``tensorboard_bridge``). What a trial run carries (parameters, tags, metrics, final
status) is said once, in ``trial_record``; the sweep's parent-run artefacts in ``sweep_artifacts``.
Every bridge runs behind ``guard.Guarded``: a tracker that breaks is marked failed in tracking.json and
progress.json, logged once, and left out for the rest of the sweep, which goes on.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from search_spaces.spec.sweep_spec import SweepSpec
from search_spaces.spec.tracking_spec import TRACKER_EXTRAS

#: The Python module each tracker's bridge needs.
CLIENT_MODULES: dict[str, str] = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboardX"}


class TrackerNotInstalledError(RuntimeError):
    """A spec asks for a tracker whose client is not installed here."""


def check_clients(spec: SweepSpec) -> None:
    """Raises :class:`TrackerNotInstalledError` (one line naming the extra) when a tracker the spec turns
    on has no client installed."""
    for name in spec.tracking.enabled():
        if find_spec(CLIENT_MODULES[name]) is None:
            raise TrackerNotInstalledError(
                f"tracking.{name}: the {CLIENT_MODULES[name]} client is not installed; "
                f"pip install 'lossweep[{TRACKER_EXTRAS[name]}]'"
            )


def tracking_callbacks(spec: SweepSpec, sweep_dir: str, sweep_id: str) -> list[Any]:
    """The Tune callbacks of the trackers ``spec.tracking`` turns on, each behind its guard."""
    from search_spaces.run.tracking.guard import Guarded
    from search_spaces.run.tracking.trial_record import TrialRecords

    check_clients(spec)
    records = TrialRecords(spec.model_dump(mode="json"), sweep_id)
    out: list[Any] = []
    tracking = spec.tracking
    if tracking.mlflow is not None:
        from search_spaces.run.tracking.mlflow_bridge import MlflowBridge

        out.append(Guarded("mlflow", sweep_dir, MlflowBridge(tracking.mlflow, records, sweep_dir)))
    if tracking.wandb is not None:
        from search_spaces.run.tracking.wandb_bridge import WandbBridge

        out.append(Guarded("wandb", sweep_dir, WandbBridge(tracking.wandb, records, sweep_dir)))
    if tracking.tensorboard:
        from search_spaces.run.tracking.tensorboard_bridge import TensorboardBridge

        out.append(Guarded("tensorboard", sweep_dir, TensorboardBridge(records, sweep_dir)))
    return out
