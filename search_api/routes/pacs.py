"""The hospital's PACS behind the API: recent chest studies, and search by study or series UID.

The PACS is the one configured on the server (``CXR_API_DICOMWEB_URL`` and its
credentials), never an address from the request: a client can neither make the
service call another server nor send a result anywhere else. Studies are listed
by handle (a keyed hash), without UIDs, names or dates; a search takes a handle,
or a Study/Series Instance UID the user copied from the viewer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, model_validator

from embed.errors import CXRError
from search_api.deps import EngineDep, QueryParams, SettingsDep, run_blocking
from search_api.params import Sex
from search_api.results import search_response
from search_api.schemas import ERROR_RESPONSES, ErrorResponse, SearchResponse
from search_api.settings import APISettings

router = APIRouter(tags=["pacs"])
PACS_ERRORS = {**ERROR_RESPONSES, 404: {"model": ErrorResponse, "description": "no PACS configured on this server, "
                                                                          "or the study is not in it"},
               400: {"model": ErrorResponse, "description": "a body that is not JSON"}}

_UID = r"^[0-9]+(\.[0-9]+)*$"


class PacsNotConfiguredError(CXRError):
    """No PACS behind this service: a 404 (nothing to list or fetch from), not a server fault."""

    http_status = 404
    code = "pacs_not_configured"


class PacsStudy(BaseModel):
    handle: str = Field(description="keyed hash of the study; pass it back as `study` to search with it")
    rank: int = Field(description="1 = most recent")
    modalities: list[str]
    sex: Sex | None = None
    age: float | None = None
    instances: int | None = None


class PacsStudiesResponse(BaseModel):
    studies: list[PacsStudy]


class PacsSearchRequest(QueryParams):
    """One of ``study`` (a handle from /v1/pacs/studies), ``study_uid`` or ``series_uid``; then the usual options."""

    # "exactly one of" stated in the schema too, so schema-driven clients send valid requests
    # (the chosen one must be a string, not an explicit null)
    model_config = {"extra": "forbid", "json_schema_extra": {"oneOf": [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("study", "study_uid", "series_uid")]}}

    study: str | None = Field(None, pattern=r"^u_[0-9a-f]{16}$")
    study_uid: str | None = Field(None, max_length=64, pattern=_UID)
    series_uid: str | None = Field(None, max_length=64, pattern=_UID)
    store: bool = Field(False, description="send the similar cases back to the PACS as a Key Object Selection note")

    @model_validator(mode="after")
    def _one_query(self) -> PacsSearchRequest:
        if sum(v is not None for v in (self.study, self.study_uid, self.series_uid)) != 1:
            raise ValueError("give exactly one of study (a handle), study_uid or series_uid")
        return self


class PacsSearchResponse(SearchResponse):
    query: str = Field(description="keyed hash of the query instance's SOP Instance UID")
    kos_stored: bool = False
    kos_referenced: int = Field(0, description="similar cases of this PACS referenced in the note")


def _client(settings: APISettings) -> Any:
    from embed.dicomweb import PacsAuth, connect

    if not settings.dicomweb_url:
        raise PacsNotConfiguredError("no PACS configured: set CXR_API_DICOMWEB_URL (and CXR_API_DICOMWEB_AUTH)")
    return connect(settings.dicomweb_url, PacsAuth(basic=settings.dicomweb_auth or None,
                                                   token=settings.dicomweb_token or None))


@router.get("/pacs/studies", response_model=PacsStudiesResponse, responses=PACS_ERRORS,
            summary="Recent chest radiograph studies of the PACS (QIDO-RS)")
async def pacs_studies(request: Request, settings: SettingsDep,
                       limit: int = Query(20, ge=1, le=100)) -> PacsStudiesResponse:
    """The most recent CR/DX chest studies, de-identified (handle, modalities, sex, age), newest first."""
    from embed.dicomweb import recent_studies

    studies = await run_blocking(request, lambda: recent_studies(_client(settings), limit=limit))
    request.state.result_count = len(studies)
    return PacsStudiesResponse(studies=[PacsStudy(**s) for s in studies])


@router.post("/search/dicomweb", response_model=PacsSearchResponse, responses=PACS_ERRORS,
             summary="Similar cases of a PACS study or series (WADO-RS), optionally stored back (STOW-RS)")
async def search_dicomweb(body: PacsSearchRequest, request: Request, engine: EngineDep,
                          settings: SettingsDep) -> PacsSearchResponse:
    """Fetch the study's radiograph (PA, else AP, else the first) from the PACS and search with it."""
    from fastapi.exceptions import RequestValidationError

    if body.k > settings.max_k:
        raise RequestValidationError([{"loc": ("k",), "msg": f"k must be at most {settings.max_k}",
                                       "type": "less_than_equal"}])
    params = body  # the shared k, filters and options of every search route, plus the PACS query
    filters = params.filters()

    def work() -> PacsSearchResponse:
        from embed.dicomweb import resolve_study
        from index.pacs import search_study

        client = _client(settings)
        study = resolve_study(client, body.study) if body.study else body.study_uid
        out = search_study(engine, client, study=study, series=body.series_uid, k=params.k, filters=filters,
                           with_attention=params.attention, store=body.store, **params.patient_flags(),
                           **params.view_options())
        base = search_response(out.result, params.k, request.app.state.model_sha)
        return PacsSearchResponse(**base.model_dump(), query=out.query_key, kos_stored=out.stored,
                                  kos_referenced=out.referenced)

    response = await run_blocking(request, work)
    request.state.result_count = response.count
    return response
