"""Search spaces of a ``SweepSpec``: explicit trial lists (grid, random) and Optuna's define-by-run space (TPE).

A trial's parameters are one flat dict: ``method``, ``lr``, the coefficients of that method only
(others absent: the space is conditional on the method), ``seed``, and ``model`` when the spec lists
several model presets (the size as an axis: every configuration at every size, like the seeds).

Seeds: a grid or random configuration runs once per seed, so every method sees the same seeds (paired
design). Under TPE each sampled configuration takes the next seed in turn (``trial.number`` modulo the
number of seeds): TPE learns from every trial, so replicating each sample per seed would halve its
budget. A TPE sweep over several methods gives them the trials in turn (trial ``i`` runs method
``i mod M`` at size ``(i div M) mod P`` on seed ``(i div MP) mod S``), so every method, baseline
included, gets the same search budget at the same sizes on the same seeds; TPE chooses the learning rate
and the coefficients.

Torch-free; optuna is imported only by ``define_by_run``'s caller (its argument is an ``optuna.Trial``).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from search_spaces.spec.sweep_spec import SIZE_PARAM, Range, SweepSpec, Value

if TYPE_CHECKING:
    import optuna


def _axis(value: Value) -> list[float]:
    if isinstance(value, Range):
        raise ValueError("a range has no grid axis")
    return list(value) if isinstance(value, list) else [value]


def _sizes(spec: SweepSpec) -> list[dict[str, str]]:
    """The ``model`` entry of each size's trials: none when the spec trains one preset."""
    return [{SIZE_PARAM: name} for name in spec.model.presets()] if spec.model.is_axis() else [{}]


def grid_trials(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every configuration of a grid spec × every size × every seed: sizes in the spec's order, then
    methods, then seed-major within a configuration (so the paired runs of one configuration are
    neighbours)."""
    out: list[dict[str, Any]] = []
    for size in _sizes(spec):
        for method in spec.methods:
            space = {k: v for k, v in spec.method_space(method).items() if v is not None}
            names = list(space)
            for combo in itertools.product(*(_axis(space[n]) for n in names)):
                for seed in spec.seeds:
                    out.append({"method": method, **size, **dict(zip(names, combo, strict=True)), "seed": seed})
    return out


def _draw(value: Value, rng: random.Random) -> float:
    if isinstance(value, Range):
        if value.distribution == "loguniform":
            return math.exp(rng.uniform(math.log(value.low), math.log(value.high)))
        return rng.uniform(value.low, value.high)
    if isinstance(value, list):
        return rng.choice(value)
    return value


def random_trials(spec: SweepSpec) -> list[dict[str, Any]]:
    """``num_samples`` configurations drawn with ``search.seed`` (method first, then its
    coefficients), each run once per size and seed."""
    rng = random.Random(spec.search.seed)
    out: list[dict[str, Any]] = []
    for _ in range(spec.search.num_samples):
        method = rng.choice(spec.methods)
        params = {k: _draw(v, rng) for k, v in spec.method_space(method).items() if v is not None}
        out.extend({"method": method, **size, **params, "seed": seed} for size in _sizes(spec) for seed in spec.seeds)
    return out


def explicit_trials(spec: SweepSpec) -> list[dict[str, Any]]:
    """The trial list of a grid or random spec."""
    if spec.search.algorithm == "grid":
        return grid_trials(spec)
    if spec.search.algorithm == "random":
        return random_trials(spec)
    raise ValueError(f"search.algorithm {spec.search.algorithm!r} has no explicit trial list (it is sampled)")


class DefineByRun:
    """Optuna define-by-run space: the method (in turn), then only its coefficients and the LR. Fixed
    values are returned as constants (OptunaSearch adds them to the trial's config), with the seed.
    A class, not a closure, because OptunaSearch pickles its space with its state."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        spec = self.spec
        # Methods in turn, not sampled: a sampled method would give the methods TPE likes more trials.
        turn = trial.number // len(spec.methods)
        method = spec.methods[trial.number % len(spec.methods)]
        constants: dict[str, Any] = {"method": method}
        sizes = _sizes(spec)
        constants.update(sizes[turn % len(sizes)])
        turn //= len(sizes)
        for name, value in spec.method_space(method).items():
            if value is None:
                continue
            if isinstance(value, Range):
                trial.suggest_float(name, value.low, value.high, log=value.distribution == "loguniform")
            elif isinstance(value, list) and len(value) > 1:
                trial.suggest_categorical(name, list(value))
            else:
                constants[name] = value[0] if isinstance(value, list) else value
        constants["seed"] = spec.seeds[turn % len(spec.seeds)]
        return constants


def define_by_run(spec: SweepSpec) -> Callable[[optuna.Trial], dict[str, Any]]:
    """The define-by-run space of a TPE spec (see ``DefineByRun``)."""
    return DefineByRun(spec)
