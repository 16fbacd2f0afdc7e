"""Headers every answer carries, so a browser treats what the service sends as no more than it is: a
Content-Security-Policy (the web page loads only its own files and runs no inline script; nothing may
frame it), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (for browsers without
frame-ancestors) and ``Referrer-Policy: no-referrer``.

A downloaded HTML report is self-contained (inline styles, inline SVG figures) and runs no script at
all: it gets a stricter policy of its own (``REPORT_CSP``), set by its route. FastAPI's interactive API
docs (``/docs``, ``/redoc``) are pages of FastAPI's making, with an inline start-up script and assets
from its CDN: they get ``DOCS_CSP``, which allows those and still forbids framing.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware adding ``HEADERS`` to every HTTP answer that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._raw = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
        self._docs = [(k, DOCS_CSP.encode() if k == b"content-security-policy" else v) for k, v in self._raw]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        docs = str(scope.get("path", "")).startswith(DOCS_PATHS)
        extra = self._docs if docs else self._raw

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
