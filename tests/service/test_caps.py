"""Server-side compute caps: what a sweep may ask for is bounded by the operator's settings, checked at
submission from the spec alone (nothing runs), each refusal naming the field and the setting."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from search_spaces.spec.admission import AdmissionContext, admit
from search_spaces.spec.presets import get_preset, list_presets
from service.caps import check_caps
from service.settings import Settings
from tests.fixtures.service import LiveService
from tests.service.helpers import demo_spec
from tests.service.test_api import assert_error


def with_changes(spec: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for section, values in sections.items():
        if isinstance(spec.get(section), dict):
            spec[section].update(values)
        else:
            spec[section] = values["value"]
    return spec


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget": {"steps": 10**12, "tokens": None}}, "body.budget"),
        ({"resources": {"workers": 1000, "cpus_per_worker": 0.001}, "data": {"batch_size": 1000}},
         "body.resources.workers"),
        ({"resources": {"gpus_per_worker": 64}}, "body.resources.gpus_per_worker"),
        ({"model": {"overrides": {"n_layer": 100_000}}}, "body.model"),
        ({"model": {"overrides": {"n_embd": 10**6}}}, "body.model"),
        ({"data": {"seq_len": 10**9}}, "body.data.batch_size"),
        ({"data": {"batch_size": 10**6}}, "body.data.batch_size"),
        ({"data": {"tokenizer": "bpe:1000000000"}}, "body.model"),
        ({"max_concurrent_trials": {"value": 10**9}}, "body.max_concurrent_trials"),
    ],
)
def test_oversized_sweeps_are_refused(live_service: LiveService, changes: dict[str, Any], field: str) -> None:
    alice = live_service.client("alice")
    body = assert_error(alice.post("/v1/sweeps", json=with_changes(demo_spec(alice), **changes)), 422, field)
    assert body["error"] == "over_limit" and "LOSSWEEP_MAX_" in body["message"], body
    assert alice.get("/v1/sweeps").json()["total"] == 0


def test_caps_are_settings(service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(max_tokens_per_trial=1000)
    body = assert_error(live.client("alice").post("/v1/sweeps", json={"preset": "demo"}), 422, "body.budget")
    assert "LOSSWEEP_MAX_TOKENS_PER_TRIAL" in body["message"]


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_every_preset_fits_the_default_caps(name: str) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    check_caps(admit(get_preset(name), AdmissionContext(data_roots=settings.resolved_data_roots)), settings)


def test_footprint_matches_the_model_and_the_budget() -> None:
    from trainables.model.presets import model_preset

    spec = get_preset("demo")
    fp = admit(spec, AdmissionContext(data_roots=[])).footprint
    assert fp.params == model_preset(spec.model.preset, **spec.model.overrides, vocab_size=257).num_params()
    assert fp.tokens_per_trial == spec.total_steps() * spec.data.batch_size * spec.data.seq_len
    assert fp.tokens_per_sweep == fp.tokens_per_trial * spec.num_trials()


def test_activation_cap_counts_one_micro_batch() -> None:
    spec = get_preset("oec-paper")
    doc = spec.model_dump(mode="json")
    doc["data"]["corpus"] = "stdlib"
    context = AdmissionContext(data_roots=[])
    whole = admit(type(spec).model_validate(doc), context).footprint
    doc["budget"]["micro_batch"] = doc["data"]["batch_size"] // 4
    quarter = admit(type(spec).model_validate(doc), context).footprint
    assert quarter.activation_bytes_per_worker * 4 == whole.activation_bytes_per_worker
    assert quarter.params == whole.params and quarter.tokens_per_trial == whole.tokens_per_trial
