"""Indexed cases by id: metadata, standardized image, and their own similar cases.

Ids are integers looked up in the store; no client value ever becomes a path.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from index.engine import SearchEngine
from index.schemas import CaseRow, SearchFilters
from search_api.deps import EngineDep, SettingsDep, parse_query_params, run_blocking
from search_api.params import (MAX_VIEW_LEN, MIN_THUMB_SIZE, AgeQuery, CaseId, FlagQuery, ListQuery,
                               SamePatientQuery, SexQuery, ViewScope)
from search_api.results import case_out, search_response
from search_api.schemas import ERROR_RESPONSES, CaseListResponse, CaseOut, ErrorResponse, SearchResponse

router = APIRouter(prefix="/cases", tags=["cases"])
_NOT_FOUND = {404: {"model": ErrorResponse, "description": "no such case"}}
MAX_PAGE = 200


@router.get("", response_model=CaseListResponse, responses=ERROR_RESPONSES, summary="Browse the indexed cases")
async def list_cases(
    request: Request,
    engine: EngineDep,
    offset: int = Query(0, ge=0, le=2**62, description="cases to skip (id order)"),
    limit: int = Query(50, ge=1, le=MAX_PAGE, description=f"cases per page, at most {MAX_PAGE}"),
    view: ListQuery = None,
    view_family: Literal["frontal", "lateral"] | None = Query(None, description="frontal (PA/AP) or lateral"),
    sex: SexQuery = None,
    age_min: AgeQuery = None,
    age_max: AgeQuery = None,
    source: ListQuery = None,
    finding: ListQuery = None,
) -> CaseListResponse:
    """A page of cases in id order with the search filters (for example pickers and browsing)."""
    try:
        filters = SearchFilters(view=view, view_family=view_family, sex=sex, age_min=age_min, age_max=age_max,
                                source=source, finding=finding)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None
    total, rows = await run_blocking(request, engine.list_cases, filters, offset, limit)
    request.state.result_count = len(rows)
    return CaseListResponse(total=total, offset=offset, limit=limit, cases=[case_out(r) for r in rows])


def _get_case(engine: SearchEngine, case_id: int) -> CaseRow:
    case = engine.get_case(case_id)
    if case is None:
        raise HTTPException(404, f"no case with id {case_id}")
    return case


@router.get("/{case_id}", response_model=CaseOut, responses={**ERROR_RESPONSES, **_NOT_FOUND},
            summary="One indexed case")
async def get_case(request: Request, engine: EngineDep, case_id: CaseId) -> CaseOut:
    """Pseudonymous metadata, findings and prognosis of an indexed case."""
    case = await run_blocking(request, _get_case, engine, case_id)
    request.state.result_count = 1
    return case_out(case)


@router.get("/{case_id}/image", response_class=Response, responses={
    **ERROR_RESPONSES, **_NOT_FOUND, 200: {"content": {"image/png": {}}, "description": "standardized PNG"}},
    summary="Standardized image of an indexed case")
async def case_image(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    case_id: CaseId,
    size: int | None = Query(None, ge=MIN_THUMB_SIZE,
                             description="square size in pixels (at most CXR_API_MAX_THUMB_SIZE)"),
) -> Response:
    """The PNG the model saw (``size`` resizes it, bounded); only indexed cases can be served."""
    if size is not None and size > settings.max_thumb_size:
        raise HTTPException(422, f"size must be at most {settings.max_thumb_size}")

    def work() -> bytes:
        _get_case(engine, case_id)
        return engine.case_image(case_id, size)

    png = await run_blocking(request, work)
    request.state.result_count = 1
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{case_id}/similar", response_model=SearchResponse, responses={**ERROR_RESPONSES, **_NOT_FOUND},
            summary="Similar cases of an indexed case")
async def similar(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    case_id: CaseId,
    k: int = Query(10, ge=1, description="neighbours (at most CXR_API_MAX_K)"),
    view: ListQuery = None,
    sex: SexQuery = None,
    age_min: AgeQuery = None,
    age_max: AgeQuery = None,
    source: ListQuery = None,
    finding: ListQuery = None,
    same_patient: SamePatientQuery = "exclude",
    attention: FlagQuery = False,
    view_scope: ViewScope = Query("same", description="same view family as the case, or any view"),
    query_view: str | None = Query(None, max_length=MAX_VIEW_LEN, description="override the case's view"),
) -> SearchResponse:
    """Search with an indexed case as the query; its own images (same patient) are excluded by default."""
    p = parse_query_params(list(request.query_params.multi_items()), settings.max_k, attention_default=False)
    filters = p.filters()

    def work() -> SearchResponse:
        _get_case(engine, case_id)
        result = engine.search(case_id, k=p.k, filters=filters, with_attention=p.attention, **p.patient_flags(),
                               **p.view_options())
        result.hits = [h for h in result.hits if h.case.id != case_id]
        return search_response(result, p.k, request.app.state.model_sha)

    response = await run_blocking(request, work)
    request.state.result_count = response.count
    return response
