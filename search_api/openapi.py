"""The OpenAPI schema with this server's own limits written in.

The routes are declared once at import time, but ``k``, ``size`` and the upload
size are capped by settings (``CXR_API_MAX_K``, ``CXR_API_MAX_THUMB_SIZE``,
``CXR_API_MAX_UPLOAD_BYTES``). A schema-driven client (schemathesis, generated
SDKs) must not see a request that the schema allows refused, so the schema is
generated per app and the settings' limits are written into it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from search_api.settings import APISettings


def _limit(schema: dict[str, Any], name: str, settings: APISettings) -> None:
    """Set the maximum of one parameter/property schema named ``name`` (nullable ones are anyOf)."""
    maxima = {"k": settings.max_k, "size": settings.max_thumb_size}
    if name in maxima:
        for sub in schema.get("anyOf", [schema]):
            if sub.get("type") == "integer":
                sub["maximum"] = maxima[name]
    if name == "file":
        schema["maxLength"] = settings.max_upload_bytes


def apply_limits(schema: dict[str, Any], settings: APISettings) -> dict[str, Any]:
    """Write the settings' caps into every parameter and request body of ``schema`` (in place)."""
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                _limit(param.get("schema", {}), param.get("name", ""), settings)
            for media in op.get("requestBody", {}).get("content", {}).values():
                body = media.get("schema", {})
                if body.get("format") == "binary":
                    _limit(body, "file", settings)
                for name, prop in body.get("properties", {}).items():
                    _limit(prop, name, settings)
    return schema


def install_openapi(app: FastAPI, settings: APISettings) -> None:
    """Replace ``app.openapi`` by one that states ``settings``' limits (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            app.openapi_schema = apply_limits(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
