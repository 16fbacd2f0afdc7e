"""Refactors move code, not results: the demo sweep and a TPE sweep, at a tiny scale, give the very
trials tables recorded in ``tests/golden/*.json`` (parameters, resolved settings, final metrics; floats
compared bit for bit)."""

from __future__ import annotations

import json

import pytest

from tests.golden.trials import golden_path, golden_specs, trials_table


@pytest.mark.parametrize("name", sorted(golden_specs()))
def test_trials_table_is_unchanged(name: str) -> None:
    recorded = json.loads(golden_path(name).read_text())
    computed = json.loads(json.dumps(trials_table(golden_specs()[name])))  # the same JSON round trip
    assert computed == recorded
