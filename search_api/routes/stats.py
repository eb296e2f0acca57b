"""What the loaded index holds: size, model, counts per source and finding."""

from __future__ import annotations

from fastapi import APIRouter, Request

from index.engine import SearchEngine
from search_api.deps import EngineDep, run_blocking
from search_api.schemas import ERROR_RESPONSES, ModelInfo, StatsResponse

router = APIRouter(tags=["index"])


def build_stats(engine: SearchEngine, model_sha: str | None, model_name: str | None) -> StatsResponse:
    """The response from :meth:`SearchEngine.stats` (an :class:`index.schemas.EngineStats`), as it is."""
    st = engine.stats()
    return StatsResponse(
        cases=st.cases,
        embedding_dim=st.embed_dim,
        model=ModelInfo(name=model_name, sha256=model_sha),
        sources=st.by_source,
        findings=st.by_finding,
        engine=st,
    )


@router.get("/stats", response_model=StatsResponse, responses=ERROR_RESPONSES, summary="Index statistics")
async def stats(request: Request, engine: EngineDep) -> StatsResponse:
    """Index size, model (short sha256 and name), embedding size, counts per source and finding."""
    st = request.app.state
    result = await run_blocking(request, build_stats, engine, st.model_sha, st.model_name)
    request.state.result_count = result.cases
    return result
