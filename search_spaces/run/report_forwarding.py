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

The queue is an actor (the controller is another process); one per trial-actor process, kept for the
next trial when Tune reuses the actor (``search_spaces.run.driver``), so a reused trial starts one
process fewer. Each run tags its reports with a fresh token and the reader drops any other, so a
report can never reach the wrong trial.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from ray.train.v2.api.callback import UserCallback

T = TypeVar("T")

#: The key under which a report's checkpoint path reaches Tune (the same as ``TuneReportCallback``'s).
CHECKPOINT_PATH_KEY = "checkpoint_path"


class ForwardReports(UserCallback):
    """Runs in the Train controller: puts rank 0's row of every report (all-reduced by the workers,
    so rank 0's row stands for all) on ``queue`` as ``(token, row)``, with the checkpoint's path when
    there is one."""

    def __init__(self, queue: Any, token: str) -> None:
        self._queue = queue
        self._token = token

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any | None) -> None:
        row = dict(metrics[0])
        if checkpoint is not None:
            row[CHECKPOINT_PATH_KEY] = checkpoint.path
        self._queue.put((self._token, row))


_process_queue: Any = None


def _queue() -> Any:
    """This process's report queue, created on first use (``num_cpus=0``: it holds no CPU a trial's
    workers need)."""
    global _process_queue
    if _process_queue is None:
        from ray.util.queue import Queue

        _process_queue = Queue(actor_options={"num_cpus": 0})
    return _process_queue


def fit_reporting_to_tune(fit: Callable[[list[UserCallback]], T], *, poll_s: float = 0.5) -> T:
    """``fit(callbacks)`` in a helper thread, each of its reports passed to ``tune.report`` from this
    thread as it arrives; returns what ``fit`` returns and raises what it raises."""
    global _process_queue
    from ray import tune
    from ray.util.queue import Empty

    queue = _queue()
    token = uuid.uuid4().hex
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fit([ForwardReports(queue, token)])
        except BaseException as exc:  # re-raised in the trial function's thread below
            outcome["error"] = exc

    def forward(item: tuple[str, dict[str, Any]]) -> None:
        if item[0] == token:
            tune.report(item[1])

    thread = threading.Thread(target=run, name="lossweep-train-run", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            try:
                item = queue.get(timeout=poll_s)
            except Empty:
                if thread.is_alive():
                    continue
                # The controller puts each report before the run can return: what is left is final.
                while not queue.empty():
                    forward(queue.get(timeout=poll_s))
                break
            forward(item)
        thread.join()
        finished = True
    finally:
        if not finished:
            # Stopped mid-run (Tune ends a stopped trial's thread inside ``tune.report``): the run
            # may still put reports, so the next trial of this process gets a fresh queue.
            queue.shutdown(force=True)
            _process_queue = None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
