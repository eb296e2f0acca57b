"""One JSON audit line per request on logger ``cxr.audit``.

A pure ASGI middleware (no body buffering, so uploads still stream into the
capped reader). It logs the path with ids templated (``/v1/cases/{id}``), never
the query string, file names or anything from the image.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone

from starlette.types import ASGIApp, Message, Receive, Scope, Send

audit_log = logging.getLogger("cxr.audit")
_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")


class AuditMiddleware:
    """Records time, key id, endpoint, status, latency and result count."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # Matched routes only (no client-chosen text in the log); ids become "{id}".
            endpoint = _ID_SEGMENT.sub("/{id}", scope.get("path", "")) if scope.get("route") else "<unmatched>"
            state = scope.get("state", state)
            record = {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "key_id": state.get("key_id"),
                "method": scope.get("method"),
                "endpoint": endpoint,
                "status": status["code"],
                "latency_ms": round((time.perf_counter() - start) * 1000.0, 1),
                "results": state.get("result_count"),
            }
            # Liveness probes poll every second or so: keep them out of the INFO stream.
            level = logging.DEBUG if endpoint == "/health" and status["code"] == 200 else logging.INFO
            audit_log.log(level, json.dumps(record, separators=(",", ":")))
