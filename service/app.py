"""The FastAPI application: ``create_app(settings)`` builds one service (database, Ray handle, background
monitor) and its routes. ``uvicorn --factory service.app:create_app`` or ``lossweep serve`` run it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.errors import install_error_handlers
from service.limits import BodySizeLimit
from service.monitor import Monitor
from service.routes import auth, health, presets, results, statuses, sweeps
from service.routes.openapi import build_openapi, operation_id
from service.routes.ui import mount_ui
from service.security_headers import SecurityHeaders
from service.settings import Settings, get_settings
from service.state import ServiceState
from service.version import service_version
from trainables.losses.registry import TERMS  # the registry's declarations only: torch-free

DESCRIPTION = """\
Submit hyperparameter sweeps over LLM-pretraining loss regularizers ({terms}) to a Ray cluster, follow
them, cancel them, and download their trials, best-config reports and winning configurations.

Authenticate with `Authorization: Bearer <token>` (`lossweep token create NAME [--admin]`). Every
error is JSON: `{{"status", "error", "message", "errors": [{{"loc", "field", "message"}}]}}`.
""".format(terms=", ".join(t.label for t in TERMS.values()))

TAGS = [
    {"name": "sweeps", "description": "Submit, list, follow and cancel sweeps."},
    {"name": "results", "description": "Trials, live metrics, reports and the best configuration."},
    {"name": "presets", "description": "Named sweeps to start from."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def create_app(settings: Settings | None = None, *, run_monitor: bool = True) -> FastAPI:
    settings = settings or get_settings()
    state = ServiceState.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        monitor = Monitor(state) if run_monitor else None
        app.state.monitor = monitor
        if monitor is not None:
            await monitor.start()
        try:
            yield
        finally:
            if monitor is not None:
                await monitor.stop()
            state.close()

    app = FastAPI(
        title="lossweep",
        version=service_version(),
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.lossweep = state
    install_error_handlers(app)
    for module in (health, auth, sweeps, results, presets, statuses):
        app.include_router(module.router)
    mount_ui(app)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: error answers of the other layers carry the headers too
    logging.getLogger("lossweep.service").setLevel(logging.INFO)
    return app
