"""The ``tracking:`` section through the REST API on a real uvicorn: a credential is refused with a 422
naming the field and is never echoed or stored; the service's default section fills a submission
that has none and leaves one that has its own."""

from __future__ import annotations

from typing import Any

from search_spaces.spec.tracking_spec import TrackingSpec
from tests.fixtures.service import LiveService
from tests.service.helpers import demo_spec

SECRET = "s3cr3t-VALUE-42"
DEFAULT = {"mlflow": {"tracking_uri": "http://mlflow.internal:5000", "experiment_name": "lab"}}


def test_a_credential_in_the_tracking_section_gets_a_422_naming_the_field(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    spec = demo_spec(alice)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**spec, "tracking": {"wandb": {"project": "p", "api_key": SECRET}}}, "body.tracking.wandb"),
        ({**spec, "tracking": {"mlflow": {"tracking_uri": f"http://me:{SECRET}@mlflow:5000"}}},
         "body.tracking.mlflow.tracking_uri"),
        ({"preset": "demo", "overrides": {"tracking.wandb.api_key": SECRET}}, "body.overrides.tracking.wandb"),
    ]  # fmt: skip
    for body, field in cases:
        response = alice.post("/v1/sweeps", json=body)
        assert response.status_code == 422, response.text
        assert SECRET not in response.text
        errors = response.json()["errors"]
        assert any(e["field"] == field for e in errors), errors
        assert "credentials never go in a sweep spec" in response.text or "user or password" in response.text
    assert alice.get("/v1/sweeps").json()["total"] == 0


def test_the_service_default_fills_only_submissions_without_tracking(service_factory: Any) -> None:
    live = service_factory(tracking=TrackingSpec.model_validate(DEFAULT))
    alice = live.client("alice")
    spec = demo_spec(alice)
    spec.pop("tracking", None)
    plain = alice.post("/v1/sweeps", json=spec)
    assert plain.status_code == 201, plain.text
    assert plain.json()["spec"]["tracking"]["mlflow"] == DEFAULT["mlflow"]
    own = alice.post("/v1/sweeps", json={"preset": "demo", "overrides": {"tracking.tensorboard": False}})
    assert own.status_code == 201, own.text
    assert own.json()["spec"]["tracking"] == {"mlflow": None, "wandb": None, "tensorboard": False}
