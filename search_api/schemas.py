"""Response models of the API (what docs/api.md documents), with OpenAPI examples."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from index.schemas import CalibratedVote, CaseRow, EngineStats, OODFlag

_CASE_EXAMPLE = {
    "id": 17,
    "sha256": "9c1e0b7d3f2a...",
    "source": "covid-chestxray",
    "patient": "p_1a2b3c4d5e6f7a8b",
    "view": "PA",
    "sex": "M",
    "age": 65.0,
    "day_offset": 3.0,
    "findings": ["COVID-19"],
    "prognosis": {"survival": True, "intubated": False, "went_icu": None},
    "licence": "CC BY 4.0",
    "extra": {},
    "image_url": "/v1/cases/17/image",
}


class ErrorResponse(BaseModel):
    """Every error: a stable machine code and a message for people."""

    error: str = Field(examples=["not_an_image"])
    detail: str = Field(examples=["the uploaded file is not a PNG, JPEG or DICOM image"])


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    index_loaded: bool
    reason: str | None = Field(None, description=(
        "why the index is not loaded, as a short code: no_index, index_state, config_mismatch, model_error, "
        "engine_error (details in the server log only)"), examples=["index_state"])
    version: str

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "index_loaded": True, "reason": None, "version": "0.1.0"}]})


class ModelInfo(BaseModel):
    name: str | None = None
    sha256: str | None = Field(None, description="first 12 hex of the checkpoint's sha256")


class StatsResponse(BaseModel):
    cases: int
    embedding_dim: int | None = None
    model: ModelInfo
    sources: dict[str, int] = Field(default_factory=dict)
    findings: dict[str, int] = Field(default_factory=dict)
    engine: EngineStats = Field(description="the engine's own stats (SearchEngine.stats())")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "cases": 2189, "embedding_dim": 256, "model": {"name": "cxr_resnet18", "sha256": "3f2a9c1e0b7d"},
        "sources": {"covid-chestxray": 579, "kermany": 791, "nih14": 819},
        "findings": {"COVID-19": 342, "No Finding": 820, "Pneumonia": 900}, "engine": {}}]})


class CaseOut(CaseRow):
    """An indexed case: pseudonymous metadata (the engine's :class:`CaseRow`) and the URL of its standardized image."""

    patient: str | None = Field(None, description="keyed pseudonym, never the source's id")
    image_url: str

    model_config = ConfigDict(json_schema_extra={"examples": [_CASE_EXAMPLE]})


class HitOut(BaseModel):
    rank: int = Field(description="1-based")
    similarity: float = Field(description="cosine similarity to the query")
    case: CaseOut


class OutcomeOut(BaseModel):
    known: int
    positive: int
    share: float | None = None


class SearchResponse(BaseModel):
    k: int
    count: int
    hits: list[HitOut]
    vote: dict[str, float] = Field(description="kNN vote: share of similarity-weighted neighbours per finding")
    prognosis: dict[str, OutcomeOut]
    attention_png: str | None = Field(
        None, description="base64 RGBA PNG, query-sized: colormapped heat, alpha = attention (overlay-ready)")
    query_png: str | None = Field(None, description="base64 8-bit grey PNG of the standardized query")
    model_sha256: str | None = None
    ood: OODFlag | None = Field(None, description="out-of-distribution guard: in-distribution score and flag with "
                                                 "its reason (None when the model has no fitted guard)")
    calibrated_vote: dict[str, CalibratedVote] = Field(
        default_factory=dict, description="per finding: calibrated probability and the neighbours behind it")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "k": 10, "count": 1,
        "hits": [{"rank": 1, "similarity": 0.913, "case": _CASE_EXAMPLE}],
        "vote": {"COVID-19": 0.7, "Pneumonia": 0.3},
        "prognosis": {"survival": {"known": 6, "positive": 5, "share": 0.833}},
        "attention_png": "iVBORw0KGgo...", "query_png": "iVBORw0KGgo...", "model_sha256": "3f2a9c1e0b7d"}]})


class ClassifyResponse(BaseModel):
    k: int
    vote: dict[str, float]
    ood: OODFlag | None = Field(None, description="out-of-distribution guard (see /v1/search)")
    calibrated_vote: dict[str, CalibratedVote] = Field(
        default_factory=dict, description="per finding: calibrated probability and the neighbours behind it")

    model_config = ConfigDict(json_schema_extra={"examples": [{"k": 10, "vote": {"COVID-19": 0.7, "Pneumonia": 0.3}}]})


class EmbedResponse(BaseModel):
    dim: int
    embedding: list[float] = Field(description="L2-normalised: cosine similarity is the dot product")
    model_sha256: str | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"dim": 4, "embedding": [0.5, -0.5, 0.5, 0.5], "model_sha256": "3f2a9c1e0b7d"}]})


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "no X-API-Key"},
    403: {"model": ErrorResponse, "description": "wrong X-API-Key"},
    422: {"model": ErrorResponse, "description": "bad parameter, or an image that cannot be decoded"},
    503: {"model": ErrorResponse, "description": "the index is not loaded"},
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    400: {"model": ErrorResponse, "description": "malformed multipart body"},
    413: {"model": ErrorResponse, "description": "upload or declared pixel count over the limit"},
    415: {"model": ErrorResponse, "description": "not a PNG, JPEG or DICOM image (by content)"},
}
