"""The web pages under ``/ui/`` (static files from ``service/ui/static``), and ``/`` redirecting there.

Redirects are relative (``Location: ui/``), so the pages work unchanged behind a proxy that serves the
service under a path prefix; the pages themselves reach the API by relative URLs (``../v1/...``)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from service.ui import STATIC_DIR

UI_PATH = "/ui/"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui")
async def ui_without_slash() -> RedirectResponse:
    return RedirectResponse("ui/", status_code=307)


def page_url(base_url: str, sweep_id: str | None = None) -> str:
    """The web page of a service at ``base_url``, or of one sweep on it."""
    page = base_url.rstrip("/") + UI_PATH
    return page + (f"#/sweeps/{quote(sweep_id, safe='')}" if sweep_id else "")


def mount_ui(app: FastAPI) -> None:
    """Adds the redirects and the static pages to ``app``."""
    app.include_router(router)
    app.mount(UI_PATH.rstrip("/"), StaticFiles(directory=STATIC_DIR, html=True), name="ui")
