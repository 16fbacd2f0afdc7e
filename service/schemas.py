"""HTTP shapes: what clients send (``*Create``/submission) and what they get back (``*Public``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from search_spaces.run.sweep_dir import TRACKER_STATUSES, TRIAL_STATUSES
from service.models import SweepStatus


class PresetSubmission(BaseModel):
    """Submit a named preset, optionally changed with dotted-key overrides (as ``--set`` on the CLI)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"preset": "demo", "overrides": {"seeds": [0, 1]}}]},
    )

    preset: str = Field(min_length=1, max_length=100, description="A preset name from GET /v1/presets.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted keys of the spec and their new values, e.g. {\"search.num_samples\": 8}.",
    )
    name: str | None = Field(default=None, min_length=1, max_length=200, description="Name of the sweep.")


class BestSoFar(BaseModel):
    trial_id: str | None = None
    method: str | None = None
    val_loss: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class TrackerState(BaseModel):
    """How one experiment tracker (docs/tracking.md) is receiving the sweep."""

    status: str = Field(description="One of: " + ", ".join(TRACKER_STATUSES) + ".")
    error: str | None = Field(default=None, description="Why it failed (credentials masked); the sweep goes on.")


class SweepLinks(BaseModel):
    """Where to look next. ``dashboard`` is the sweep's Ray job in the Ray dashboard (once submitted)."""

    model_config = ConfigDict(extra="allow")  # later links (e.g. a Grafana board) add keys

    self: str
    report: str
    trials: str
    best_config: str
    cancel: str
    dashboard: str | None = None
    grafana: str | None = Field(default=None, description="The Grafana board filtered to this sweep (when configured).")


class SweepPublic(BaseModel):
    """A sweep as the API shows it."""

    id: str = Field(examples=["demo-3f9a2c1b"])
    name: str
    owner: str
    preset: str | None
    status: str = Field(description=", ".join(SweepStatus) + " (GET /v1/statuses).", examples=["RUNNING"])
    message: str = Field(description="Why the sweep is where it is (queue position, Ray's job message, ...).")
    num_trials: int | None
    trial_counts: dict[str, int] = Field(description="Trials per status: " + ", ".join(TRIAL_STATUSES) + ".")
    best: BestSoFar | None = Field(description="Best trial so far (lowest validation CE, diverged excluded).")
    tokens: int | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    tracking: dict[str, TrackerState] = Field(
        default_factory=dict, description="The experiment trackers the sweep reports to, by name, and their state."
    )
    ray_submission_id: str | None = Field(description="The Ray job's submission id.")
    ray_job_status: str | None
    cancel_requested: bool
    queue_position: int | None = Field(
        default=None, description="Place among the owner's sweeps waiting for their concurrency limit (1 = next)."
    )
    sweep_dir: str | None = Field(description="Where the sweep's files live on the server (shown to admins only).")
    message_detail: str | None = Field(
        default=None, description="The full reason of a failure (the driver's last log lines; admins only).")
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    links: SweepLinks


class SweepDetail(SweepPublic):
    spec: dict[str, Any] = Field(description="The resolved SweepSpec the driver runs.")
    can_cancel: bool | None = Field(
        default=None,
        description="On GET: whether the token asking may cancel this sweep now (its owner or an admin, and the "
        "sweep has not ended). Clients show a cancel action only when true.",
    )


class SweepList(BaseModel):
    items: list[SweepPublic]
    total: int
    limit: int
    offset: int


class PresetSummary(BaseModel):
    name: str
    description: str
    num_trials: int | None = None


class PresetPublic(PresetSummary):
    spec: dict[str, Any]


class TrialsPublic(BaseModel):
    sweep_id: str
    trials: list[dict[str, Any]]


class MetricsPublic(BaseModel):
    sweep_id: str
    trial_id: str
    since_step: int | None
    last_step: int | None = Field(description="Pass this as since_step to get only newer rows next time.")
    rows: list[dict[str, Any]]


class IntervalPublic(BaseModel):
    n: int = Field(description="Seeds that ran the configuration.")
    mean: float | None = Field(description="Mean measured loss over those seeds (nats).")
    sd: float | None = Field(description="Sample standard deviation over seeds; null with one seed.")
    low: float | None = Field(description="Lower end of the 95% t-interval of the mean; null with one seed.")
    high: float | None = Field(description="Upper end of the 95% t-interval of the mean; null with one seed.")


class BestConfig(BaseModel):
    sweep_id: str
    trial_id: str
    method: str
    val_loss: float | None
    step: int | None
    params: dict[str, Any] = Field(description="The method's coefficients and the learning rate.")
    stage: str = Field(description="`confirm` when the configuration was re-trained on fresh seeds, else `search`.")
    measured: str = Field(description="What the interval measures: test CE where recorded, else validation CE.")
    interval: IntervalPublic = Field(description="The configuration's own interval over its seeds.")
    rule: str = Field(description="How the best configuration was chosen.")
    train_config: dict[str, Any] | None = Field(description="The trial's resolved TrainConfig, when recorded.")


class TokenPublic(BaseModel):
    id: int
    name: str
    is_admin: bool
    created_at: datetime


class WhoAmI(BaseModel):
    name: str
    is_admin: bool
    expires_at: datetime | None = Field(default=None, description="When the token stops working (null: never).")


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    status: str
    database: str
    ray: str


class ErrorItem(BaseModel):
    loc: list[str | int]
    field: str
    message: str


class ErrorBody(BaseModel):
    status: int
    error: str
    message: str
    errors: list[ErrorItem]


class Statuses(BaseModel):
    """Every status a sweep or a trial can have, in display order, and the final ones (that never change)."""

    sweep: list[str]
    sweep_final: list[str]
    trial: list[str]
    trial_final: list[str]
