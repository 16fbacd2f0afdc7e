"""The service's configuration: one ``Settings`` object read from ``LOSSWEEP_*`` environment variables
(and an optional ``.env`` file), passed explicitly to ``create_app`` so tests and the CLI can build
their own without touching the environment."""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from search_spaces.spec.tracking_spec import TrackingSpec


def lossweep_home() -> Path:
    """The per-user state/data directory: ``$LOSSWEEP_HOME`` or ``~/.lossweep``."""
    return Path(os.environ.get("LOSSWEEP_HOME") or Path.home() / ".lossweep").expanduser()


class Settings(BaseSettings):
    """Every knob of the service. Environment variables are ``LOSSWEEP_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="LOSSWEEP_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=lossweep_home, description="State and data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: a SQLite file <home>/lossweep.db. PostgreSQL: "
        "postgresql+psycopg://user@host:5432/db.",
    )
    storage_root: str | None = Field(
        default=None,
        description="Where sweep directories live (<storage_root>/<sweep id>): a local path shared with the "
        "Ray nodes or a pyarrow filesystem URI such as s3://bucket/prefix; default <home>/sweeps.",
    )
    ray_address: str = Field(
        default="http://127.0.0.1:8265",
        description="Ray Jobs API address (the head's dashboard HTTP address).",
    )
    dashboard_url: str | None = Field(
        default=None, description="Public URL of the Ray dashboard used in links; default: ray_address."
    )
    grafana_url: str | None = Field(
        default=None,
        description="Base URL of a Grafana that has deploy/grafana/lossweep-dashboard.json; adds a `grafana` link "
        "(the board filtered to the sweep) to every sweep. Unset: no Grafana link.",
    )
    ray_auth_token: SecretStr | None = Field(
        default=None, description="Ray's auth token (Ray >= 2.59 enables token auth by default)."
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL of this service used in links. Unset: the request's own base URL when its Host is "
        "one of trusted_hosts, else links are relative (/v1/...): a Host header never sets where links point.",
    )
    trusted_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Host names (without port) whose requests may set the base URL of links when public_url is "
        "unset (comma-separated or a JSON list).",
    )
    python_executable: str = Field(
        default=sys.executable, description="Absolute interpreter path on the Ray nodes for the sweep driver job."
    )
    job_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for every sweep's Ray job (JSON object)."
    )
    data_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Directories (or URI prefixes) that text:/parquet: corpora may come from; default <home>/data.",
    )
    tracking: TrackingSpec | None = Field(
        default=None,
        description="The tracking section a sweep gets when its submission has none (JSON, as a spec's tracking:), "
        'e.g. {"mlflow": {"tracking_uri": "http://mlflow:5000"}}. Credentials go in the Ray cluster\'s environment '
        "(job_env), never here (docs/tracking.md).",
    )
    public_read: bool = Field(default=False, description="Allow GET requests without a token.")
    max_trials_per_sweep: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Compute caps, checked at submission (service/caps.py) before anything runs.
    max_tokens_per_trial: int = Field(default=20 * 10**9, ge=1, description="Tokens one trial may train on.")
    # The largest preset, oec-paper-sizes (the paper's study at its five sizes), is 3.28T tokens with its
    # confirm stage and 177G evaluation tokens: the default caps admit every preset.
    max_tokens_per_sweep: int = Field(default=4 * 10**12, ge=1, description="Tokens all trials of a sweep together.")
    max_eval_tokens_per_trial: int = Field(
        default=5 * 10**9, ge=1,
        description="Tokens one trial may evaluate (data.eval_tokens every eval_interval steps, plus the "
        "test evaluation's tokens at the end and every test_interval steps).")
    max_eval_tokens_per_sweep: int = Field(default=200 * 10**9, ge=1,
                                           description="Tokens all trials of a sweep together may evaluate.")
    max_model_params: int = Field(default=2 * 10**9, ge=1, description="Parameters of the model, from the spec.")
    max_activation_bytes_per_worker: int = Field(
        default=128 * 2**30,  # the paper's batch of oec-16m (oec-paper) on one 141 GB GPU fits; 10x that does not
        ge=1,
        description="Estimated activation memory of one worker (batch x seq_len x width; trainables.model.memory).",
    )
    max_workers_per_trial: int = Field(default=64, ge=1, description="DDP workers of one trial.")
    max_gpus_per_trial: float = Field(default=16, ge=0, description="GPUs of one trial (workers x gpus_per_worker).")
    max_concurrent_trials: int = Field(default=64, ge=1, description="A sweep's max_concurrent_trials.")
    min_cpus_per_worker: float = Field(
        default=0.25, ge=0,
        description="Least resources.cpus_per_worker a sweep may ask: a smaller share packs more trial processes "
        "on a node than it has cores.")
    max_processes_per_node: int = Field(
        default=64, ge=1,
        description="Trial worker processes of one sweep that may share a node (concurrent trials x workers, "
        "bounded by the largest node's CPUs / cpus_per_worker when the cluster is known).")
    check_cluster_fit: bool = Field(
        default=True,
        description="Refuse a sweep whose trial fits on no node of the Ray cluster as it is now (turn off for "
        "an autoscaling cluster that starts nodes on demand).",
    )
    max_concurrent_sweeps_per_user: int = Field(
        default=2, ge=1, description="Sweeps of one user running on Ray at once; more wait QUEUED."
    )
    max_queued_sweeps_per_user: int = Field(
        default=20, ge=0, description="Sweeps of one user waiting QUEUED; beyond this a submission gets 429."
    )
    poll_interval_s: float = Field(default=2.0, gt=0, description="How often Ray and the sweep dirs are polled.")
    ray_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one call to the Ray Jobs API.")

    @field_validator("ray_address", "dashboard_url", "public_url", "grafana_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("trusted_hosts", "data_roots", mode="before")
    @classmethod
    def _split_list(cls, value: object, info: ValidationInfo) -> object:
        # A JSON list, or plain text: host names separated by commas, paths by os.pathsep.
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        sep = "," if info.field_name == "trusted_hosts" else os.pathsep
        return [part.strip() for part in value.split(sep) if part.strip()]

    # Derived values -------------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'lossweep.db'}"

    @property
    def resolved_storage_root(self) -> str:
        return (self.storage_root or str(self.home / "sweeps")).rstrip("/")

    @property
    def resolved_dashboard_url(self) -> str:
        return self.dashboard_url or self.ray_address

    @property
    def resolved_data_roots(self) -> list[str]:
        return self.data_roots or [str(self.home / "data")]

    def ray_token(self) -> str | None:
        return self.ray_auth_token.get_secret_value() if self.ray_auth_token else None


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment (cached); the CLI and ``create_app()`` without arguments use it."""
    return Settings()
