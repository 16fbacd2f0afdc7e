"""What one sweep asks of the cluster, computed from its spec and its data's vocabulary without building
anything: tokens trained and evaluated (per trial and per sweep), model parameters, per-worker activation
memory, workers, GPUs and CPUs per trial, and processes that may share a node. The service caps these
(``service/caps.py``); every count is made here, once."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search_spaces.spec.sweep_spec import SweepSpec
from trainables.data.vocabulary import DataVocabulary
from trainables.model.memory import estimate_rank_memory
from trainables.model.presets import model_for_data


@dataclass(frozen=True)
class Footprint:
    """What a sweep needs; ``vocab_size`` is the one the trials' model is built with."""

    tokens_per_trial: int
    tokens_per_sweep: int
    eval_tokens_per_trial: int
    eval_tokens_per_sweep: int
    params: int
    vocab_size: int
    activation_bytes_per_worker: int
    workers: int
    gpus_per_trial: float
    cpus_per_worker: float
    concurrent_trials: int

    def processes_per_node(self, nodes: Sequence[Mapping[str, float]] | None = None) -> int:
        """Trial worker processes that may run on one node at once: every concurrent trial's workers, or
        fewer where the largest node's CPUs (at ``cpus_per_worker`` each) hold fewer."""
        processes = self.concurrent_trials * self.workers
        if nodes and self.cpus_per_worker > 0:
            largest = max(float(node.get("CPU", 0.0)) for node in nodes)
            processes = min(processes, math.floor(largest / self.cpus_per_worker + 1e-9))
        return processes


def evaluations_per_trial(spec: SweepSpec) -> int:
    """Validation passes of one trial run to its end: one every ``eval_interval`` steps."""
    return math.ceil(spec.total_steps() / spec.eval_interval())


def test_evaluations_per_trial(spec: SweepSpec) -> int:
    """Test passes of one trial run to its end: one at the end, and one every ``test_interval`` steps."""
    interval = spec.test_interval()
    return 1 + (math.ceil(spec.total_steps() / interval) - 1 if interval else 0)


def eval_tokens_per_trial(spec: SweepSpec) -> int:
    """Tokens one trial evaluates when it runs to the end: ``data.eval_tokens`` per validation pass
    (``steps / eval_interval`` of them) and the test evaluation's tokens per test pass."""
    return spec.data.eval_tokens * evaluations_per_trial(spec) + spec.test_tokens() * test_evaluations_per_trial(spec)


def footprint(spec: SweepSpec, vocabulary: DataVocabulary) -> Footprint:
    """The sweep's needs. The model is the trials' own (``model_for_data``, with the data's vocabulary).
    Activation memory is ``trainables.model.memory``'s estimate for one worker's share of the batch
    (batch_size / workers sequences of seq_len tokens, in the spec's precision): the activations saved for
    the backward pass plus the loss's float32 copy of the logits."""
    workers = spec.resources.workers

    def estimate_of(preset: str) -> tuple[Any, Any]:
        model = model_for_data(preset, spec.model.overrides, vocabulary.vocab_size)
        return model, estimate_rank_memory(
            model,
            sequences=max(1, spec.data.batch_size // workers),
            seq_len=spec.data.seq_len,
            precision=spec.precision,
            micro_batch=spec.budget.micro_batch,  # with accumulation a worker holds one pass at a time
        )

    # With the size as an axis, the largest model is what every limit and cap must hold.
    model, estimate = max(
        (estimate_of(p) for p in spec.model.presets()), key=lambda me: (me[0].num_params(), me[1].activations)
    )
    trials = spec.num_trials()
    per_trial = spec.total_tokens()
    eval_per_trial = eval_tokens_per_trial(spec)
    return Footprint(
        tokens_per_trial=per_trial,
        tokens_per_sweep=per_trial * trials,
        eval_tokens_per_trial=eval_per_trial,
        eval_tokens_per_sweep=eval_per_trial * trials,
        params=model.num_params(),
        vocab_size=model.vocab_size,
        activation_bytes_per_worker=estimate.activations + estimate.loss_transient,
        workers=workers,
        gpus_per_trial=workers * spec.resources.gpus_per_worker,
        cpus_per_worker=spec.resources.cpus_per_worker,
        concurrent_trials=min(spec.max_concurrent_trials, trials),
    )
