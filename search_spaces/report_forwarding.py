"""The workers' reports of a trial's Train run, handed to Tune from the trial function's own thread.

Ray's ``TuneReportCallback`` passes each report through a one-slot actor queue that the Tune trial
actor's *main* thread drains and re-reports itself into the one-slot result queue it also consumes.
When a Train run ends right after its last report, the trial function returns and Tune's closing
marker (``RESULT_DUPLICATE``, put by the function's thread) can take that slot first; the main thread
then blocks for ever putting the last report behind it, and the trial never ends (Ray 2.60, seen on
a loaded 2-core machine: the demo's last trial, every worker gone, the sweep waiting).

Here the Train run goes on in a helper thread while the trial function's thread takes each report
from a queue of our own and calls ``tune.report``: the one path Tune's function trainables are built
for, where the main thread only ever consumes. The order of the reports is kept, and every report a
run made is handed over before the function returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ray.train.v2.api.callback import UserCallback

T = TypeVar("T")

#: The key under which a report's checkpoint path reaches Tune (the same as ``TuneReportCallback``'s).
CHECKPOINT_PATH_KEY = "checkpoint_path"


class ForwardReports(UserCallback):
    """Runs in the Train controller: puts rank 0's row of every report (all-reduced by the workers,
    so rank 0's row stands for all) on ``queue``, with the checkpoint's path when there is one."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any | None) -> None:
        row = dict(metrics[0])
        if checkpoint is not None:
            row[CHECKPOINT_PATH_KEY] = checkpoint.path
        self._queue.put(row)


def fit_reporting_to_tune(fit: Callable[[list[UserCallback]], T], *, poll_s: float = 0.5) -> T:
    """``fit(callbacks)`` in a helper thread, each of its reports passed to ``tune.report`` from this
    thread as it arrives; returns what ``fit`` returns and raises what it raises."""
    from ray import tune
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fit([ForwardReports(queue)])
        except BaseException as exc:  # re-raised in the trial function's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="lossweep-train-run", daemon=True)
    thread.start()
    try:
        while True:
            try:
                row = queue.get(timeout=poll_s)
            except Empty:
                if thread.is_alive():
                    continue
                # The controller puts each report before the run can return: what is left is final.
                while not queue.empty():
                    tune.report(queue.get(timeout=poll_s))
                break
            tune.report(row)
        thread.join()
    finally:
        queue.shutdown(force=True)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
