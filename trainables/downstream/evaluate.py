"""Evaluate a model on named tasks through lm-evaluation-harness, which does the prompting and the
scoring. Local tasks (``trainables.downstream.local_tasks``) are built here and need no network; any other
name is one of the harness's own tasks (HellaSwag, ARC-Easy, PIQA, LAMBADA, …), whose data comes from
the Hugging Face Hub: without a network such a task is refused with one line saying so.

A task's score is its accuracy (``acc``; ``exact_match`` for generation tasks) with the harness's
standard error (the sample standard deviation over questions / sqrt(n)) and the number of questions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from trainables.downstream.errors import EvalError, require_lm_eval
from trainables.downstream.local_tasks import LOCAL_TASKS, build_local_task

#: The harness's metrics taken as a task's accuracy, in order of preference.
ACCURACY_METRICS: tuple[str, ...] = ("acc", "exact_match")


@dataclass(frozen=True)
class TaskScore:
    task: str
    metric: str  # which of ACCURACY_METRICS
    acc: float
    acc_se: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _network_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{type(seen).__name__} {seen}".lower()
        if isinstance(seen, ConnectionError | TimeoutError) or any(
            word in text for word in ("connection", "offline", "resolve", "timed out", "couldn't reach", "network")
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def load_tasks(names: Sequence[str], *, corpus: str = "stdlib") -> list[Any]:
    """The harness tasks of ``names`` (local ones built from ``corpus``). One-line ``EvalError`` for an
    unknown name or a harness task whose data cannot be downloaded."""
    # The harness's own notices (task metadata hints, "Building contexts…") are not the user's business:
    # lossweep reports what fails in one line of its own.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    require_lm_eval()
    if not names:
        raise EvalError("no tasks named; name at least one, e.g. --tasks " + LOCAL_TASKS[0])
    from trainables.data.corpus import CorpusError
    from trainables.data.roots import DataRootError

    tasks: list[Any] = []
    remote = [n for n in names if n not in LOCAL_TASKS]
    for name in names:
        if name in LOCAL_TASKS:
            try:
                task = build_local_task(name, corpus=corpus)
            except (CorpusError, DataRootError) as exc:  # a path outside the service's data roots is refused
                raise EvalError(f"task {name!r}: {exc}") from None
            tasks.append(task)
    if remote:
        from lm_eval.tasks import TaskManager

        manager = TaskManager()  # indexes the harness's task folders: seconds, so only when needed
        for name in remote:
            if name not in manager.all_tasks:
                raise EvalError(
                    f"unknown task {name!r}: not a local task ({', '.join(LOCAL_TASKS)}) "
                    f"nor one of lm-eval's {len(manager.all_tasks)} tasks (lm-eval --tasks list)"
                )
            try:
                loaded = manager.load([name])
            except Exception as exc:  # the harness downloads the data here: name what failed
                if _network_error(exc):
                    raise EvalError(
                        f"task {name!r} needs its data from the Hugging Face Hub, which cannot be reached "
                        f"from here; use a local task ({', '.join(LOCAL_TASKS)}) or evaluate where the Hub is reachable"
                    ) from None
                raise EvalError(f"task {name!r} could not be loaded: {str(exc).splitlines()[0][:200]}") from None
            tasks.extend(loaded["tasks"].values())
    return tasks


def scores_from_results(results: Mapping[str, Any]) -> dict[str, TaskScore]:
    """Each evaluated task's accuracy, standard error and question count from ``simple_evaluate``'s result."""
    out: dict[str, TaskScore] = {}
    samples = results.get("n-samples", {})
    for task, values in results.get("results", {}).items():
        for metric in ACCURACY_METRICS:
            key = next((k for k in values if k.split(",")[0] == metric), None)
            if key is None:
                continue
            se = values.get(key.replace(metric, f"{metric}_stderr", 1))
            n = samples.get(task, {}).get("effective")
            out[task] = TaskScore(
                task=task,
                metric=metric,
                acc=float(values[key]),
                acc_se=float(se) if isinstance(se, int | float) else float("nan"),
                n=int(n) if n is not None else 0,
            )
            break
    return out


def evaluate(
    lm: Any, tasks: Sequence[str], *, limit: int | None = None, corpus: str = "stdlib"
) -> dict[str, TaskScore]:
    """Scores of ``lm`` (a harness model, e.g. ``LossweepLM``) on ``tasks``, zero-shot, the first
    ``limit`` questions of each (all when None)."""
    loaded = load_tasks(tasks, corpus=corpus)
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(
        model=lm,
        tasks=loaded,
        limit=limit,
        # Tasks come built: an index of the harness's own folders would cost seconds for nothing.
        task_manager=TaskManager(include_defaults=False),
        bootstrap_iters=100,  # only for metrics without a closed-form SE; accuracy's is closed-form
        log_samples=False,
        verbosity="WARNING",
    )
    if results is None:
        raise EvalError("the harness returned no results")
    return scores_from_results(results)
