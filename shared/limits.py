"""Request body size limit (ASGI middleware), installed by every service's bootstrap.

A body larger than ``ILT_MAX_BODY_BYTES`` (default 1 MiB) is refused with ``413 {"error": "body_too_large",
"message": ..., "limit_bytes": N}`` before any of it reaches a handler: at once when ``Content-Length`` says so,
otherwise as soon as the bytes read exceed the limit (chunked uploads). A body within the limit is read here and
handed on unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

Scope = dict[str, Any]
Message = dict[str, Any]

DEFAULT_MAX_BODY_BYTES = 1_048_576


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "bad_request", "Content-Length is not a number")
                    return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        # read the body here (at most max_bytes), then hand it on
        chunks: list[bytes] = []
        size = 0
        more = True
        pending: list[Message] = []
        while more:
            message = await receive()
            if message["type"] != "http.request":  # e.g. http.disconnect: pass it on as it is
                pending.append(message)
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        if not pending:
            pending.append({"type": "http.request", "body": b"".join(chunks), "more_body": False})
        elif chunks:
            pending.insert(0, {"type": "http.request", "body": b"".join(chunks), "more_body": True})

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        await self._refuse(send, 413, "body_too_large",
                           f"the request body is larger than the limit of {self.max_bytes} bytes",
                           limit_bytes=self.max_bytes)

    @staticmethod
    async def _refuse(send: Any, status: int, code: str, message: str, **details: Any) -> None:
        body = orjson.dumps({"error": code, "message": message, **details})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def install(app: Any, settings: Any) -> None:
    """Add the limit to a FastAPI/Starlette app (before it serves its first request)."""
    app.add_middleware(BodySizeLimit, max_bytes=getattr(settings, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))
