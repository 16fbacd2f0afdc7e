"""Operator limits on what one sweep may ask of the cluster, checked at submission before anything runs:
tokens trained and evaluated per trial and per sweep, model parameters and per-worker activation memory,
workers, GPUs and CPUs per worker, trial concurrency and processes per node, and whether a trial fits on
the Ray cluster at all. The counts are the sweep layer's (``search_spaces.spec.footprint``, reached
through its admission); the limits are the service's settings.

Each refusal is a 422 naming the spec field and the setting (``LOSSWEEP_MAX_...``) that refused it.
"""

from __future__ import annotations

import math
from typing import Any

from search_spaces.spec.admission import Admission
from service.errors import ApiError, error_item, summarize
from service.settings import Settings


def _human(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def check_caps(admission: Admission, settings: Settings, nodes: list[dict[str, float]] | None = None) -> None:
    """Raises a 422 listing every cap the admitted spec exceeds. ``nodes``: the cluster's nodes, when known,
    bound the processes that can share one."""
    spec, fp = admission.spec, admission.footprint
    checks = [
        (("body", "budget"), fp.tokens_per_trial, settings.max_tokens_per_trial, "tokens per trial",
         "LOSSWEEP_MAX_TOKENS_PER_TRIAL"),
        (("body", "budget"), fp.tokens_per_sweep, settings.max_tokens_per_sweep, "tokens in the whole sweep",
         "LOSSWEEP_MAX_TOKENS_PER_SWEEP"),
        (("body", "data", "eval_tokens"), fp.eval_tokens_per_trial, settings.max_eval_tokens_per_trial,
         "evaluation tokens per trial (eval_tokens x steps / eval_interval, plus the test evaluations)",
         "LOSSWEEP_MAX_EVAL_TOKENS_PER_TRIAL"),
        (("body", "data", "eval_tokens"), fp.eval_tokens_per_sweep, settings.max_eval_tokens_per_sweep,
         "evaluation tokens in the whole sweep", "LOSSWEEP_MAX_EVAL_TOKENS_PER_SWEEP"),
        (("body", "model"), fp.params, settings.max_model_params,
         f"model parameters (vocabulary {fp.vocab_size:,})", "LOSSWEEP_MAX_MODEL_PARAMS"),
        (("body", "data", "batch_size"), fp.activation_bytes_per_worker, settings.max_activation_bytes_per_worker,
         "bytes of activations per worker (batch_size/workers, or budget.micro_batch, x seq_len x model width)",
         "LOSSWEEP_MAX_ACTIVATION_BYTES_PER_WORKER"),
        (("body", "resources", "workers"), fp.workers, settings.max_workers_per_trial, "workers per trial",
         "LOSSWEEP_MAX_WORKERS_PER_TRIAL"),
        (("body", "resources", "gpus_per_worker"), fp.gpus_per_trial, settings.max_gpus_per_trial,
         "GPUs per trial (workers x gpus_per_worker)", "LOSSWEEP_MAX_GPUS_PER_TRIAL"),
        (("body", "max_concurrent_trials"), spec.max_concurrent_trials, settings.max_concurrent_trials,
         "concurrent trials", "LOSSWEEP_MAX_CONCURRENT_TRIALS"),
        (("body", "max_concurrent_trials"), fp.processes_per_node(nodes), settings.max_processes_per_node,
         "trial processes on one node (concurrent trials x workers)", "LOSSWEEP_MAX_PROCESSES_PER_NODE"),
    ]
    errors = [
        error_item(loc, f"{_human(value)} {what} is over this service's limit of {_human(limit)} ({env})")
        for loc, value, limit, what, env in checks
        if not math.isfinite(value) or value > limit
    ]
    if fp.cpus_per_worker < settings.min_cpus_per_worker:
        errors.append(error_item(
            ("body", "resources", "cpus_per_worker"),
            f"{fp.cpus_per_worker:g} CPUs per worker is under this service's floor of "
            f"{settings.min_cpus_per_worker:g} (LOSSWEEP_MIN_CPUS_PER_WORKER)"))
    if errors:
        raise ApiError(422, summarize(errors), errors=errors, code="over_limit")


def check_cluster_fit(spec: Any, nodes: list[dict[str, float]]) -> None:
    """Refuses a trial whose workers cannot be placed on the cluster's nodes (the spec's own resource
    rule, with the nodes as its context), naming the nodes' sizes."""
    from search_spaces.spec.sweep_spec import check_fits

    try:
        check_fits(spec.resources, nodes)
    except ValueError as exc:
        raise ApiError(422, f"body.resources: {exc}", loc=("body", "resources"), code="does_not_fit") from exc
