"""Upload endpoints: search, classify and embed a query image.

The body is read by :func:`search_api.uploads.read_upload` (in memory, capped),
so FastAPI does not parse it; ``openapi_extra`` documents the multipart form.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from search_api.batching import embed_upload
from search_api.deps import EngineDep, QueryParams, SettingsDep, parse_query_params, run_blocking
from search_api.params import form_schema
from search_api.results import search_response
from search_api.schemas import UPLOAD_ERRORS, ClassifyResponse, EmbedResponse, SearchResponse
from search_api.settings import APISettings
from search_api.uploads import FIELDS_BYTES, MAX_FIELDS, read_upload, require_image

RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "application/dicom")  # also accepted: application/octet-stream

router = APIRouter(tags=["search"])

# Defaults here; search_api.openapi writes this server's own limits (CXR_API_MAX_K, ...) into the schema.
_FORM_FIELDS: dict[str, Any] = form_schema(APISettings.model_fields["max_k"].default,
                                           APISettings.model_fields["max_upload_bytes"].default)


def _upload_body(fields: tuple[str, ...]) -> dict[str, Any]:
    schema = {"type": "object", "required": ["file"], "properties": {f: _FORM_FIELDS[f] for f in fields},
              "additionalProperties": False}
    return {"requestBody": {"required": True, "description": (
        f"multipart/form-data with one `file` part and at most {MAX_FIELDS} parts in all (each text field at "
        f"most {FIELDS_BYTES} bytes); or the raw image bytes as the body, with the fields as query parameters"),
        "content": {
            "multipart/form-data": {"schema": schema, "encoding": {
                "file": {"contentType": ", ".join(RAW_IMAGE_TYPES)},
                **{f: {"style": "form", "explode": True} for f in ("view", "source", "finding")}}},
            **{ctype: {"schema": {**_FORM_FIELDS["file"]}} for ctype in RAW_IMAGE_TYPES},
        }}}


async def _query(request: Request, settings: APISettings, *, attention_default: bool = True,
                 allowed: tuple[str, ...] | None = None) -> tuple[bytes, QueryParams]:
    upload = await read_upload(request, settings.max_upload_bytes, idle_timeout=settings.body_timeout_s)
    pairs = list(request.query_params.multi_items())
    pairs += [(name, v) for name, values in upload.fields.items() for v in values]
    kw = {"allowed": allowed} if allowed is not None else {}
    params = parse_query_params(pairs, settings.max_k, attention_default=attention_default, **kw)
    data = require_image(upload, settings.max_image_pixels)
    return data, params


@router.post("/search", response_model=SearchResponse, responses=UPLOAD_ERRORS,
             summary="Similar cases of an uploaded image", openapi_extra=_upload_body(tuple(_FORM_FIELDS)))
async def search(request: Request, engine: EngineDep, settings: SettingsDep) -> SearchResponse:
    """The k most similar indexed cases, their kNN vote and prognosis, the attention map and standardized query."""
    data, p = await _query(request, settings)
    filters = p.filters()
    query = await embed_upload(request, engine, data)

    def work() -> SearchResponse:
        result = engine.search(query, k=p.k, filters=filters, with_attention=p.attention, **p.patient_flags())
        return search_response(result, p.k, request.app.state.model_sha)

    response = await run_blocking(request, work)
    request.state.result_count = response.count
    return response


@router.post("/classify", response_model=ClassifyResponse, responses=UPLOAD_ERRORS,
             summary="kNN vote of an uploaded image",
             openapi_extra=_upload_body(("file", "k", "view", "sex", "age_min", "age_max", "source", "finding")))
async def classify(request: Request, engine: EngineDep, settings: SettingsDep) -> ClassifyResponse:
    """Only the similarity-weighted vote of the k neighbours per finding (no images returned)."""
    data, p = await _query(request, settings, allowed=("k", "view", "sex", "age_min", "age_max", "source", "finding"))
    filters = p.filters()
    query = await embed_upload(request, engine, data)
    result = await run_blocking(request, engine.search, query, k=p.k, filters=filters, with_attention=False)
    request.state.result_count = len(result.vote)
    return ClassifyResponse(k=p.k, vote={str(k): float(v) for k, v in result.vote.items()}, ood=result.ood,
                            calibrated_vote=dict(result.calibrated))


@router.post("/embed", response_model=EmbedResponse, responses=UPLOAD_ERRORS,
             summary="Embedding of an uploaded image", openapi_extra=_upload_body(("file",)))
async def embed(request: Request, engine: EngineDep, settings: SettingsDep) -> EmbedResponse:
    """The L2-normalised embedding the index uses, for researchers."""
    data, _ = await _query(request, settings, allowed=())
    query = await embed_upload(request, engine, data)
    vec = await run_blocking(request, engine.embed, query)
    values = [float(x) for x in vec.reshape(-1)]
    request.state.result_count = 1
    return EmbedResponse(dim=len(values), embedding=values, model_sha256=request.app.state.model_sha)
