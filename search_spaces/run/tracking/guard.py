"""A tracker must never break a sweep: :class:`Guarded` forwards Tune's callback hooks to a bridge and,
the first time one raises, records the tracker as failed (tracking.json, hence progress.json and the
service's ``/v1``), logs it once, and forwards nothing more to it."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from ray.tune import Callback

from search_spaces.run.sweep_dir import record_tracking

log = logging.getLogger("lossweep.tracking")

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SECRET_PARAM = re.compile(r"(?i)\b(\w*(?:key|token|secret|passw\w*|pwd))=([^&\s'\"]+)")


def redact(text: str) -> str:
    """``text`` without credentials: a URI's ``user:password@`` and ``…key=value`` pairs masked."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m[1]}=***", text)


class Guarded(Callback):
    """``bridge``'s hooks, each in a ``try``; the bridge may also report a failure it finds later
    (an error inside a logging actor) through ``bridge.report_failure``."""

    HOOKS = (
        "on_step_begin", "on_step_end", "on_trial_start", "on_trial_restore", "on_trial_save",
        "on_trial_result", "on_trial_complete", "on_trial_error", "on_checkpoint", "on_experiment_end",
    )  # fmt: skip

    def __init__(self, name: str, sweep_dir: str, bridge: Any) -> None:
        self.name = name
        self.sweep_dir = sweep_dir
        self.bridge = bridge
        self.failed = False
        bridge.report_failure = self.fail

    def fail(self, exc: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        message = redact(f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500])
        note = f"lossweep: tracking.{self.name} failed, the sweep goes on without it: {message}"
        log.warning(note)
        print(note, file=sys.stderr, flush=True)
        try:
            record_tracking(self.sweep_dir, self.name, status="failed", error=message)
        except Exception as write_error:  # the sweep dir's own writes report their problems elsewhere
            log.warning("lossweep: cannot record the tracking failure: %s", write_error)

    def _call(self, hook: str, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return None
        try:
            return getattr(self.bridge, hook)(*args, **kwargs)
        except Exception as exc:
            self.fail(exc)
            return None

    def setup(self, **info: Any) -> None:
        if self._call("setup", **info) is not False and not self.failed:
            record_tracking(self.sweep_dir, self.name, status="ok", error=None, **self.bridge.state())

    def get_state(self) -> dict | None:
        return None  # what a bridge must find again after a restart, it finds by id in its tracker


def _forward(hook: str) -> Any:
    def method(self: Guarded, *args: Any, **kwargs: Any) -> None:
        self._call(hook, *args, **kwargs)

    method.__name__ = hook
    return method


for _hook in Guarded.HOOKS:
    setattr(Guarded, _hook, _forward(_hook))
