"""Body-size limit as plain ASGI middleware (cheap on every request): a declared Content-Length over the
limit is refused before reading; a streamed body is counted and cut off at the limit."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(size: int, limit: int) -> str:
    return f"the request body ({size} bytes or more) exceeds the limit of {limit} bytes (LOSSWEEP_MAX_BODY_BYTES)"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send, declared)
                    return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions met while reading the body; the app's handler
                    # turns this one into the usual JSON error.
                    raise HTTPException(413, detail=too_large(received, self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        message = too_large(size, self.max_bytes)
        body: dict[str, Any] = {
            "status": 413,
            "error": "payload_too_large",
            "message": message,
            "errors": [{"loc": ["body"], "field": "body", "message": message}],
        }
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})
