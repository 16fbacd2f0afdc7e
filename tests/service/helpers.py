"""Helpers for the service tests: specs derived from the real presets, and sweep dirs with results."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.search_spaces.synthetic_sweep import trial, write_sweep


def demo_spec(client: httpx.Client) -> dict[str, Any]:
    """The ``demo`` preset's full SweepSpec, as the API shows it."""
    response = client.get("/v1/presets/demo")
    assert response.status_code == 200, response.text
    return copy.deepcopy(response.json()["spec"])


def corpus_locations(obj: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Locations of the corpus setting(s) in a spec (wherever the spec keeps it)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "corpus" and isinstance(v, str):
                yield (*loc, k)
            else:
                yield from corpus_locations(v, (*loc, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from corpus_locations(v, (*loc, i))


def with_corpus(spec: dict[str, Any], corpus: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
    spec = copy.deepcopy(spec)
    locs = list(corpus_locations(spec))
    assert locs, "the demo spec names no corpus"
    node: Any = spec
    for part in locs[0][:-1]:
        node = node[part]
    node[locs[0][-1]] = corpus
    return spec, locs[0]


def server_dir(live: Any, sweep_id: str) -> str:
    """A sweep's directory on the server, as an admin sees it (users are not shown server paths)."""
    sweep_dir = live.client("root").get(f"/v1/sweeps/{sweep_id}").json()["sweep_dir"]
    assert sweep_dir, "an admin is shown the sweep dir"
    return str(sweep_dir)


def fill_sweep_dir(sweep_dir: str, *, status: str = "SUCCEEDED") -> list[dict[str, Any]]:
    """Writes results in the documented format into a sweep dir the service created: three trials,
    one of them diverged (the best non-diverged one is z_loss at lr 1e-3)."""
    trials = [
        trial("t0", "baseline", 1e-3, 2.50),
        trial("t1", "z_loss", 1e-3, 2.40, z_loss_weight=1e-4),
        trial("t2", "baseline", 3e-1, 5.55, status="DIVERGED"),
    ]
    write_sweep(Path(sweep_dir), trials, status=status, name="filled")
    return trials
