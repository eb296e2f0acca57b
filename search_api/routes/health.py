"""Liveness and readiness in one open endpoint (for load balancers and the page)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from search_api.schemas import HealthResponse

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cxr-search")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


@router.get("/health", response_model=HealthResponse, summary="Liveness and whether the index is loaded")
def health(request: Request) -> HealthResponse:
    """Always 200 while the process runs; ``index_loaded`` false (with the reason) if the engine failed;
    ``reason`` also says why a newer index generation could not be loaded while the old one is served."""
    live = getattr(request.app.state, "live", None)
    if live is not None:
        live.check()  # a removed folder shows here at once; a new generation starts loading
    loaded = getattr(request.app.state, "engine", None) is not None
    reason = getattr(request.app.state, "engine_error", None)
    return HealthResponse(index_loaded=loaded, reason=reason, version=_version())
