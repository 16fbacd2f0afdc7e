"""Trial metrics exported through Ray's own metrics pipeline (``ray.util.metrics``).

Every Ray node runs a metrics agent that serves Prometheus text at
``http://<node ip>:<metrics export port>/metrics`` (the port is ``MetricsExportPort`` in
``ray.nodes()``; Prometheus finds every node through Ray's service-discovery file
``<ray temp dir>/prom_metrics_service_discovery.json``). Gauges set here reach that endpoint after the
agent's next flush (a few seconds), named ``ray_<name>`` (counters ``ray_<name>_total``), labelled
with the tags below plus Ray's own (``WorkerId``, ``NodeAddress``, ``SessionName``...). A series
stays there about 20 s after its worker exits; Prometheus keeps the history.

Tags: ``sweep`` (sweep id), ``trial`` (Tune trial id), ``method`` (the loss method, e.g.
``mu_centering``). ``TrialMetrics.for_run`` derives them, first match wins:

1. explicit ``sweep=`` / ``trial=`` arguments;
2. the environment: ``LOSSWEEP_SWEEP_ID`` and ``LOSSWEEP_TRIAL_ID`` (the service submits each sweep's
   Ray job with the former in its runtime env, so every process of the job has it);
3. the Ray Train run name, which a sweep gives each trial as ``<sweep>-<trial id>``: with the
   sweep id known and the name starting with it, the rest is the trial; else a name ending in
   ``-<Tune trial id>`` (8 hex digits, or 5 and ``_NNNNN``) splits there (its prefix is the sweep
   tag only when the environment names no sweep);
4. otherwise the run is not part of a sweep: ``sweep="standalone"``, ``trial=<run name>``.

``record(row)`` is cheap (a dict lookup and a C++ call per metric) and does nothing where Ray is not
initialised, so the engine's plain ``train-local`` runs and unit tests pay nothing. Monitoring never
breaks training: a failing export is logged once and then skipped.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("lossweep.ray_metrics")

SWEEP_ENV = "LOSSWEEP_SWEEP_ID"
TRIAL_ENV = "LOSSWEEP_TRIAL_ID"
STANDALONE_SWEEP = "standalone"

#: Prefix Ray's metrics agent puts before every ``ray.util.metrics`` name in Prometheus.
RAY_PROMETHEUS_PREFIX = "ray_"
TRIAL_TAG_KEYS: tuple[str, ...] = ("sweep", "trial", "method")

# A Tune trial id: 8 hex digits from a searcher (Optuna), or 5 hex digits and a counter from the basic
# variant generator (grid/random: "3f0c1_00004").
_TUNE_TRIAL_ID = re.compile(r"^(?P<sweep>.+)-(?P<trial>[0-9a-f]{8}|[0-9a-f]{5}_\d{5})$")


@dataclass(frozen=True)
class MetricSpec:
    """One exported series: its ``ray.util.metrics`` name, kind, tags, and the report key it reads."""

    name: str
    kind: Literal["gauge", "counter"]
    description: str
    tag_keys: tuple[str, ...]
    row_key: str | None = None

    @property
    def prometheus_name(self) -> str:
        """The series name a Prometheus scrape of the node shows (Ray 2.60: ``ray_`` prefix,
        ``_total`` suffix for counters)."""
        suffix = "_total" if self.kind == "counter" else ""
        return f"{RAY_PROMETHEUS_PREFIX}{self.name}{suffix}"


def _gauge(name: str, row_key: str, description: str) -> MetricSpec:
    return MetricSpec(name, "gauge", description, TRIAL_TAG_KEYS, row_key)


VAL_LOSS = _gauge("lossweep_trial_val_loss", "val_loss", "Validation cross-entropy (no penalty) at the last report.")
TRAIN_LOSS = _gauge("lossweep_trial_train_loss", "train_loss", "Training cross-entropy at the last report.")
TOKENS_PER_S = _gauge("lossweep_trial_tokens_per_s", "tokens_per_s", "Training throughput, tokens per second.")
MU_NORM = _gauge("lossweep_trial_mu_norm", "mu_norm", "Norm of the mean output embedding, ||mu||.")
LOGITS_ABSMAX = _gauge("lossweep_trial_logits_absmax", "logits_absmax", "Largest |logit| on the validation batch.")
LOGITS_MEAN_ABSMAX = _gauge(
    "lossweep_trial_logits_mean_absmax",
    "logits_mean_absmax",
    "Mean over validation tokens of each token's largest |logit| (the OEC paper's statistic).",
)
LOGITS_MEAN_STD = _gauge(
    "lossweep_trial_logits_mean_std",
    "logits_mean_std",
    "Mean over validation tokens of each token's logit standard deviation (the OEC paper's statistic).",
)
TOKENS = _gauge("lossweep_trial_tokens", "tokens", "Tokens trained on so far.")
STEP = _gauge("lossweep_trial_step", "step", "Optimizer steps taken so far.")
LR = _gauge("lossweep_trial_lr", "lr", "Learning rate at the last report.")
DIVERGED = _gauge("lossweep_trial_diverged", "diverged", "1 once the trial has diverged, else 0.")
DIVERGED_TOTAL = MetricSpec(
    "lossweep_trials_diverged",
    "counter",
    "Trials that diverged (incremented once per trial, when it diverges).",
    (*TRIAL_TAG_KEYS, "cause"),
)

#: Every series a trial exports, in the order ``record`` sets them.
TRIAL_METRICS: tuple[MetricSpec, ...] = (
    VAL_LOSS,
    TRAIN_LOSS,
    TOKENS_PER_S,
    MU_NORM,
    LOGITS_ABSMAX,
    LOGITS_MEAN_ABSMAX,
    LOGITS_MEAN_STD,
    TOKENS,
    STEP,
    LR,
    DIVERGED,
    DIVERGED_TOTAL,
)


@dataclass(frozen=True)
class TrialTags:
    sweep: str
    trial: str
    method: str

    def as_dict(self) -> dict[str, str]:
        return {"sweep": self.sweep, "trial": self.trial, "method": self.method}


def resolve_tags(
    run_name: str | None,
    *,
    method: str,
    sweep: str | None = None,
    trial: str | None = None,
    env: Mapping[str, str] | None = None,
) -> TrialTags:
    """The tags of a run named ``run_name`` (rules in the module docstring)."""
    env = os.environ if env is None else env
    sweep = sweep or env.get(SWEEP_ENV) or None
    trial = trial or env.get(TRIAL_ENV) or None
    name = run_name or ""
    if trial is None and sweep is not None and name.startswith(f"{sweep}-") and len(name) > len(sweep) + 1:
        trial = name[len(sweep) + 1 :]
    match = _TUNE_TRIAL_ID.match(name)
    if match:
        # The environment's sweep id wins over the name's prefix (which may be the spec's name).
        sweep = sweep or match["sweep"]
        trial = trial or match["trial"]
    return TrialTags(sweep=sweep or STANDALONE_SWEEP, trial=trial or name or "unnamed", method=method or "baseline")


def ray_initialized() -> bool:
    """True in a process connected to Ray (a Ray worker, or a driver after ``ray.init``). Never
    imports ``ray`` itself: a process that has not imported it is not connected."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


_INSTRUMENTS: dict[str, Any] = {}


def instrument(spec: MetricSpec) -> Any:
    """The process-wide ``ray.util.metrics`` object of ``spec`` (created once: Ray registers each
    metric with the core worker, so per-call construction would be wasted work)."""
    metric = _INSTRUMENTS.get(spec.name)
    if metric is None:
        from ray.util.metrics import Counter, Gauge

        cls = Counter if spec.kind == "counter" else Gauge
        metric = cls(spec.name, description=spec.description, tag_keys=spec.tag_keys)
        _INSTRUMENTS[spec.name] = metric
    return metric


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (bools count as 0/1), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class TrialMetrics:
    """Exports one trial's report rows. Build it in the process that reports (rank 0 of the Train
    run), call ``record(row)`` per report."""

    def __init__(self, tags: TrialTags, *, enabled: bool | None = None) -> None:
        self.tags = tags
        self._tag_values = tags.as_dict()
        self._enabled = ray_initialized() if enabled is None else enabled
        self._diverged_counted = False
        self._failed = False

    @classmethod
    def for_run(
        cls,
        run_name: str | None,
        *,
        method: str,
        sweep: str | None = None,
        trial: str | None = None,
    ) -> TrialMetrics:
        return cls(resolve_tags(run_name, method=method, sweep=sweep, trial=trial))

    @property
    def enabled(self) -> bool:
        return self._enabled and not self._failed

    def record(self, metrics: Mapping[str, Any]) -> None:
        """Sets every gauge whose report key is in ``metrics`` with a finite number; counts the trial
        as diverged the first time ``diverged`` is 1. Missing or non-finite values are skipped."""
        if not self.enabled:
            return
        try:
            for spec in TRIAL_METRICS:
                if spec.row_key is None:
                    continue
                value = finite_number(metrics.get(spec.row_key))
                if value is not None:
                    instrument(spec).set(value, tags=self._tag_values)
            if not self._diverged_counted and finite_number(metrics.get("diverged")):
                cause = str(metrics.get("diverged_cause") or "unknown")
                instrument(DIVERGED_TOTAL).inc(1.0, tags={**self._tag_values, "cause": cause})
                self._diverged_counted = True
        except Exception as exc:  # a metrics pipeline problem must never end a training run
            self._failed = True
            log.warning("exporting trial metrics to Ray failed; not trying again in this run: %s", exc)
