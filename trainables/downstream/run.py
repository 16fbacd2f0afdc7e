"""One evaluation of one checkpoint, as the sweep driver runs it in a Ray task with a trial's resources
and ``lossweep eval`` runs it in its own process."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainables.downstream.defaults import DEFAULT_EVAL_BATCH, DEFAULT_TASK_CORPUS
from trainables.train.checkpoint import is_checkpoint, read_meta
from trainables.train.config import TrainConfig


def evaluate_checkpoint(
    checkpoint: str,
    tasks: Sequence[str],
    *,
    config: Mapping[str, Any] | None = None,
    model: str | None = None,
    limit: int | None = None,
    corpus: str = DEFAULT_TASK_CORPUS,
    batch_size: int = DEFAULT_EVAL_BATCH,
    threads: int | None = None,
) -> dict[str, dict[str, Any]]:
    """``{task: TaskScore.to_dict()}`` for the model of ``checkpoint`` (a checkpoint folder). ``config``:
    the run's ``TrainConfig.to_dict()`` (default: the one the checkpoint records); ``model``: load the
    weights into another preset; on the GPU when the run trained on one and one is visible, else the CPU
    with ``threads`` intra-op threads. Raises ``EvalError`` (one line) for bad input."""
    import torch

    from trainables.downstream.checkpoint import fetch_checkpoint, is_remote, load_trained
    from trainables.downstream.errors import require_lm_eval
    from trainables.downstream.evaluate import evaluate
    from trainables.downstream.lm import LossweepLM

    require_lm_eval()
    if is_remote(checkpoint):  # a sweep dir on object storage: evaluate a local copy
        with tempfile.TemporaryDirectory(prefix="lossweep-eval-") as tmp:
            local = fetch_checkpoint(checkpoint, Path(tmp))
            return evaluate_checkpoint(str(local), tasks, config=config, model=model, limit=limit, corpus=corpus,
                                       batch_size=batch_size, threads=threads)  # fmt: skip
    cfg = TrainConfig.from_dict(config) if config is not None else None
    recorded: Mapping[str, Any] = {}
    if config is not None:
        recorded = config
    elif is_checkpoint(Path(checkpoint)):
        recorded = read_meta(Path(checkpoint)).get("config") or {}
    wants_gpu = bool(recorded.get("use_gpu")) and torch.cuda.is_available()
    device = "cuda" if wants_gpu else "cpu"
    if threads and device == "cpu":
        torch.set_num_threads(int(threads))
    trained = load_trained(Path(checkpoint), config=cfg, model=model, device=device)
    lm = LossweepLM(
        trained.model, trained.tokenizer, max_length=trained.config.data.seq_len, batch_size=batch_size, device=device
    )
    scores = evaluate(lm, tasks, limit=limit, corpus=corpus)
    return {task: score.to_dict() for task, score in scores.items()}
