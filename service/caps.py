"""Operator limits on what one sweep may ask of the cluster, checked at submission before anything runs:
tokens per trial and per sweep, model parameters and per-worker activation memory estimated from the spec,
workers and GPUs per trial, trial concurrency, and whether a trial fits on the Ray cluster at all.

Each refusal is a 422 naming the spec field and the setting (``LOSSWEEP_MAX_...``) that refused it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from service.errors import ApiError, error_item, summarize
from service.settings import Settings


@dataclass(frozen=True)
class Footprint:
    """What one trial of a spec needs, estimated without building anything."""

    tokens_per_trial: int
    tokens_per_sweep: int
    params: int
    activation_bytes_per_worker: int
    workers: int
    gpus_per_trial: float


def vocab_size(tokenizer: str) -> int:
    from trainables.data.tokenizer import parse_tokenizer_spec
    from trainables.model.config import BYTES_VOCAB

    kind, size = parse_tokenizer_spec(tokenizer)
    return int(size) if kind == "bpe" and size is not None else BYTES_VOCAB


def footprint(spec: Any) -> Footprint:
    """The spec's per-trial needs. Activation memory is ``trainables.model.memory``'s estimate for one worker's
    share of the batch (b = batch_size / workers sequences of seq_len tokens, in the spec's precision):
    the activations saved for the backward pass plus the loss's float32 copy of the logits -- the part
    of a worker's memory that grows with batch x seq_len x width. With gradient accumulation
    (``budget.micro_batch``) a worker holds one micro-batch of them at a time."""
    from trainables.model.memory import estimate_rank_memory
    from trainables.model.presets import model_preset

    vocab = vocab_size(spec.data.tokenizer)
    model = model_preset(spec.model.preset, **{**spec.model.overrides, "vocab_size": vocab})
    workers = spec.resources.workers
    estimate = estimate_rank_memory(
        model,
        sequences=max(1, spec.data.batch_size // workers),
        seq_len=spec.data.seq_len,
        precision=spec.precision,
        micro_batch=spec.budget.micro_batch,
    )
    activations = estimate.activations + estimate.loss_transient
    per_trial = spec.total_tokens()
    return Footprint(
        tokens_per_trial=per_trial,
        tokens_per_sweep=per_trial * spec.num_trials(),
        params=model.num_params(),
        activation_bytes_per_worker=activations,
        workers=workers,
        gpus_per_trial=workers * spec.resources.gpus_per_worker,
    )


def _human(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def check_caps(spec: Any, settings: Settings) -> Footprint:
    """Raises a 422 listing every cap the spec exceeds; returns its footprint otherwise."""
    try:
        fp = footprint(spec)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ApiError(422, f"cannot size the sweep's trials: {exc}", loc=("body", "model")) from exc
    checks = [
        (("body", "budget"), fp.tokens_per_trial, settings.max_tokens_per_trial, "tokens per trial",
         "LOSSWEEP_MAX_TOKENS_PER_TRIAL"),
        (("body", "budget"), fp.tokens_per_sweep, settings.max_tokens_per_sweep, "tokens in the whole sweep",
         "LOSSWEEP_MAX_TOKENS_PER_SWEEP"),
        (("body", "model"), fp.params, settings.max_model_params, "model parameters", "LOSSWEEP_MAX_MODEL_PARAMS"),
        (("body", "data", "batch_size"), fp.activation_bytes_per_worker, settings.max_activation_bytes_per_worker,
         "bytes of activations per worker (batch_size/workers, or budget.micro_batch, x seq_len x model width)",
         "LOSSWEEP_MAX_ACTIVATION_BYTES_PER_WORKER"),
        (("body", "resources", "workers"), fp.workers, settings.max_workers_per_trial, "workers per trial",
         "LOSSWEEP_MAX_WORKERS_PER_TRIAL"),
        (("body", "resources", "gpus_per_worker"), fp.gpus_per_trial, settings.max_gpus_per_trial,
         "GPUs per trial (workers x gpus_per_worker)", "LOSSWEEP_MAX_GPUS_PER_TRIAL"),
        (("body", "max_concurrent_trials"), spec.max_concurrent_trials, settings.max_concurrent_trials,
         "concurrent trials", "LOSSWEEP_MAX_CONCURRENT_TRIALS"),
    ]
    errors = [
        error_item(loc, f"{_human(value)} {what} is over this service's limit of {_human(limit)} ({env})")
        for loc, value, limit, what, env in checks
        if not math.isfinite(value) or value > limit
    ]
    if errors:
        raise ApiError(422, summarize(errors), errors=errors, code="over_limit")
    return fp


def check_cluster_fit(spec: Any, nodes: list[dict[str, float]]) -> None:
    """Refuses a trial whose workers cannot be placed on the cluster's nodes (the spec's own resource
    rule, with the nodes as its context), naming the nodes' sizes."""
    from pydantic import ValidationError

    from search_spaces.spec.sweep_spec import SweepSpec

    try:
        SweepSpec.model_validate(spec.model_dump(mode="json"),
                                 context={"max_trials": spec.max_trials, "cluster_resources": nodes})
    except ValidationError as exc:
        message = str(exc.errors()[0].get("msg", "does not fit the cluster")).removeprefix("Value error, ")
        raise ApiError(422, f"body.resources: {message}", loc=("body", "resources"), code="does_not_fit") from exc
