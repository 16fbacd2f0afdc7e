"""Defaults of a downstream evaluation, shared by the sweep spec's ``eval:`` and ``lossweep eval``."""

from __future__ import annotations

from typing import Literal, get_args

#: Which trials of a sweep are evaluated (the spec's ``eval.on``): the best one, each method's best
#: configuration at every seed it ran with, or every trial that finished.
EvalTarget = Literal["best", "confirm", "all"]
EVAL_TARGETS: tuple[str, ...] = get_args(EvalTarget)
#: Sequences per forward pass.
DEFAULT_EVAL_BATCH = 32
#: The corpus the local tasks are generated from.
DEFAULT_TASK_CORPUS = "stdlib"
