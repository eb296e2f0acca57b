"""What the loaded index holds: size, model, counts per source and finding."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request

from search_api.deps import get_engine, run_blocking
from search_api.schemas import ERROR_RESPONSES, ModelInfo, StatsResponse

router = APIRouter(tags=["index"])


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _first(d: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


def build_stats(engine: Any, model_sha: str | None, model_name: str | None) -> StatsResponse:
    raw = engine.stats() or {}
    store = raw.get("store") if isinstance(raw.get("store"), dict) else {}
    merged = {**store, **raw}
    manifest = raw.get("manifest") if isinstance(raw.get("manifest"), dict) else {}
    cases = _first(merged, "cases", "ntotal", "count") or 0
    return StatsResponse(
        cases=int(cases),
        embedding_dim=_first({**manifest, **merged}, "embed_dim", "embedding_dim", "dim"),
        model=ModelInfo(name=model_name, sha256=model_sha),
        sources=_first(merged, "by_source", "sources") or {},
        findings=_first(merged, "by_finding", "findings") or {},
        engine=_json_safe(raw),
    )


@router.get("/stats", response_model=StatsResponse, responses=ERROR_RESPONSES, summary="Index statistics")
async def stats(request: Request, engine: Any = Depends(get_engine)) -> StatsResponse:
    """Index size, model (short sha256 and name), embedding size, counts per source and finding."""
    st = request.app.state
    result = await run_blocking(request, build_stats, engine, st.model_sha, st.model_name)
    request.state.result_count = result.cases
    return result
