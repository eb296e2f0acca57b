"""Exception handlers: every error leaves as ``{"error": code, "detail": message}``.

User-caused failures are :class:`embed.errors.CXRError` (their ``http_status``
is the answer). Only true bugs reach the last-resort handler, which logs the
trace server-side and returns a generic 500 without it.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embed.errors import CXRError

log = logging.getLogger("cxr.api")

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "upload_too_large",
    415: "not_an_image",
    422: "invalid_request",
    503: "unavailable",
}

# Absolute paths (POSIX or Windows) in messages could reveal where data lives.
_PATH_RE = re.compile(r"(?:[A-Za-z]:\\|/)[^\s'\"():,;]+")


def redact_paths(message: str) -> str:
    """Replace file-system paths in a message by ``<path>``."""
    return _PATH_RE.sub("<path>", message)


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


def _json(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, detail), status_code=status, headers=headers)


async def cxr_error_handler(request: Request, exc: CXRError) -> JSONResponse:
    # The reader's messages name the input "the uploaded image", never a client path;
    # index/model messages may carry server paths, hence the redaction.
    return _json(exc.http_status, exc.code, redact_paths(str(exc)))


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return _json(exc.status_code, code, detail, getattr(exc, "headers", None))


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Say which field is wrong and why; do not echo the input value back.
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return _json(422, "invalid_request", "; ".join(parts) or "invalid request")


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, "internal_error", "internal error: the failure was logged on the server")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CXRError, cxr_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unhandled_error_handler)
