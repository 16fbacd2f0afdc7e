"""The service's background task: every ``poll_interval_s`` it reconciles running sweeps with Ray and
their sweep dirs, then starts queued sweeps that now fit their owner's limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.queue import schedule
from service.ray_client import RayUnavailable
from service.reconcile import reconcile, stop_orphans
from service.state import ServiceState

log = logging.getLogger("lossweep.service")


def tick(state: ServiceState) -> None:
    reconcile(state)
    try:
        stop_orphans(state)
    except RayUnavailable as exc:  # retried next tick; the queue need not wait for it
        log.warning("cannot check the jobs of ended sweeps: %s", exc)
    schedule(state)


class Monitor:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        # Start-up reconciliation happens before the first request is served.
        await asyncio.to_thread(self._safe_tick)
        self._task = asyncio.create_task(self._run(), name="lossweep-monitor")

    def wake(self) -> None:
        """Runs the next tick now (e.g. after a cancel) instead of at the next interval."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.state.settings.poll_interval_s)
            self._wake.clear()
            await asyncio.to_thread(self._safe_tick)

    def _safe_tick(self) -> None:
        try:
            tick(self.state)
        except Exception:  # the monitor must outlive a bad tick (a DB hiccup, an unreadable sweep dir)
            log.exception("monitor tick failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
