"""The ``tracking:`` section of a sweep spec: which experiment trackers see the sweep (docs/tracking.md).

Each tracker is named here once: the field names of :class:`TrackingSpec` are the trackers'
names everywhere else (the driver's bridges, ``tracking.json``, progress.json, the docs).

Credentials never travel in a spec: they come from the environment of the Ray cluster (or the
service's settings). So the models forbid unknown fields, refuse any field whose name looks like a
credential with a message saying where credentials go, and refuse a URI that carries a user, a
password or a token; the refused value is never echoed (``hide_input_in_errors``).

Torch-free: the service validates specs without loading torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Names that look like a credential, in a field name or a URI's query.
CREDENTIAL_NAME = re.compile(r"(key|token|secret|passw|pwd|credential|auth|cookie|session)", re.IGNORECASE)
#: Where each tracker's credentials come from instead (environment variables the trackers' clients read).
CREDENTIAL_SOURCES: dict[str, str] = {
    "mlflow": "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN",
    "wandb": "WANDB_API_KEY",
    "tensorboard": "nothing (it writes local files)",
}
#: The extra that installs each tracker's client (``pip install 'lossweep[<extra>]'``).
TRACKER_EXTRAS: dict[str, str] = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboard"}

_TRACKING = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _refuse_credential_fields(tracker: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        for name in value:
            if CREDENTIAL_NAME.search(str(name)):
                raise ValueError(
                    f"{name}: credentials never go in a sweep spec; give the Ray cluster (or the service) "
                    f"{CREDENTIAL_SOURCES[tracker]} in its environment"
                )
    return value


def check_uri(uri: str, tracker: str) -> str:
    """``uri`` unchanged when it carries no credential (no ``user[:password]@``, no key/token in its query)."""
    parts = urlsplit(uri)
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValueError(
            f"the URI carries a user or password; give the Ray cluster {CREDENTIAL_SOURCES[tracker]} instead"
        )
    if any(CREDENTIAL_NAME.search(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise ValueError(f"the URI's query carries a credential; give the Ray cluster {CREDENTIAL_SOURCES[tracker]}")
    return uri


class MlflowTracking(BaseModel):
    """An MLflow tracking server: every trial a run, nested under one parent run per sweep."""

    model_config = _TRACKING

    tracking_uri: str = Field(..., min_length=1, max_length=2048, description="e.g. http://mlflow:5000")
    experiment_name: str = Field("lossweep", min_length=1, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, value: Any) -> Any:
        return _refuse_credential_fields("mlflow", value)

    @field_validator("tracking_uri")
    @classmethod
    def _uri(cls, uri: str) -> str:
        return check_uri(uri, "mlflow")


class WandbTracking(BaseModel):
    """Weights & Biases: every trial a run of ``project``, grouped by sweep. ``offline`` writes runs
    to the sweep dir's ``wandb/`` for a later ``wandb sync`` and needs no network."""

    model_config = _TRACKING

    project: str = Field("lossweep", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    entity: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    mode: Literal["online", "offline"] = "online"
    base_url: str | None = Field(None, max_length=2048, description="a W&B server of your own (WANDB_BASE_URL)")

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, value: Any) -> Any:
        return _refuse_credential_fields("wandb", value)

    @field_validator("base_url")
    @classmethod
    def _uri(cls, uri: str | None) -> str | None:
        return None if uri is None else check_uri(uri, "wandb")


class TrackingSpec(BaseModel):
    """The trackers that see the sweep. None of ``mlflow``/``wandb`` is set by default; TensorBoard
    event files (cheap: local files, a client that ships with Ray Tune) are written unless turned off."""

    model_config = _TRACKING

    mlflow: MlflowTracking | None = None
    wandb: WandbTracking | None = None
    tensorboard: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                if CREDENTIAL_NAME.search(str(name)):
                    raise ValueError(
                        f"{name}: credentials never go in a sweep spec; they come from the Ray cluster's "
                        "(or the service's) environment"
                    )
        return value

    def enabled(self) -> list[str]:
        """The names of the trackers this section turns on, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name)]
