"""Public data types of the index: what the engine returns and the API serialises.

CaseRow is deliberately missing the image location: the store keeps it, but
nothing that leaves the engine carries it (images are served by id only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from embed.cases import CaseFields


class SearchFilters(BaseModel):
    """Restrict the candidates *before* the kNN search, so k hits come back when k cases match.

    Lists mean "any of" (view PA or AP); ``finding`` matches cases having any of the findings.
    """

    model_config = ConfigDict(extra="forbid")

    view: list[str] | None = None
    sex: str | None = None
    age_min: float | None = None
    age_max: float | None = None
    source: list[str] | None = None
    finding: list[str] | None = None
    #: keep cases of this view family ("frontal" | "lateral"); cases of unknown view stay eligible
    view_family: Literal["frontal", "lateral"] | None = None

    @field_validator("view", "source", "finding", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, str):
            v = [v]
        v = [str(x).strip() for x in v if str(x).strip()]
        return v or None

    @field_validator("sex", mode="before")
    @classmethod
    def _sex(cls, v: Any) -> Any:
        if v is None or str(v).strip() == "":
            return None
        s = str(v).strip()
        if s not in ("M", "F"):  # exactly: "male" or "M' OR 1=1" must not quietly become "M"
            raise ValueError("sex must be 'M' or 'F'")
        return s

    @model_validator(mode="after")
    def _age_range(self) -> SearchFilters:
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise ValueError(f"age_min ({self.age_min}) is greater than age_max ({self.age_max})")
        return self

    def is_empty(self) -> bool:
        """True when no criterion is set (the whole index is eligible)."""
        return all(getattr(self, name) is None for name in type(self).model_fields)


class _Identified(BaseModel):
    """The index's own keys of a case (listed first in the API's JSON)."""

    id: int
    sha256: str


class CaseRow(CaseFields, _Identified):
    """One indexed case as returned to clients: :class:`embed.cases.CaseFields` with the index
    id and content hash (pseudonymous; no file location)."""


class EngineStats(BaseModel):
    """What :meth:`index.engine.SearchEngine.stats` returns (and ``/v1/stats`` serves as ``engine``):
    the store's live counts and the index's build facts."""

    cases: int = Field(description="live (not deleted) cases")
    deleted: int = Field(description="tombstoned cases, hidden from every query until the next rebuild")
    patients: int = Field(description="distinct patient pseudonyms among the live cases")
    by_source: dict[str, int]
    by_view: dict[str, int]
    by_sex: dict[str, int]
    by_finding: dict[str, int]
    index_type: str = Field(description="flat, hnsw, ivf, ivfsq or ivfpq")
    index_params: dict[str, Any]
    embed_dim: int
    model_sha256: str
    std_config: dict[str, Any] = Field(description="the standardization every image of the index went through")
    vectors: int = Field(description="vectors in the FAISS index (deleted ones included where it cannot remove)")
    faiss_device: Literal["cpu", "gpu", "milvus"] = Field(description="where FAISS searches; milvus on that backend")
    backend: Literal["faiss", "milvus"] = Field("faiss", description="the vector engine of this index")
    milvus: dict[str, Any] | None = Field(None, description="milvus backend: uri (no credentials), collection, lite")
    size_bytes: int = Field(description="size of the index folder on disk")
    updated_unix: float


class Hit(BaseModel):
    """A neighbour: the case, its cosine similarity to the query, and its 1-based rank."""

    case: CaseRow
    similarity: float
    rank: int


class OutcomeSummary(BaseModel):
    """Among the neighbours: how many films have this outcome recorded, how many positive, the share.

    ``known``/``positive``/``share`` count films (kept for the contract); two films of one
    patient are one outcome, so ``patients*`` count each patient once with their latest
    known value (largest day offset) and are what a reader should be shown.
    """

    known: int
    positive: int
    share: float | None = None
    patients_known: int | None = None
    patients_positive: int | None = None
    patient_share: float | None = None


class VoteShare(BaseModel):
    """One finding of the vote placed in its hierarchy (COVID-19 under viral pneumonia under pneumonia).

    ``share`` is the similarity-weighted share of the neighbours having the finding;
    ``neighbours``/``patients`` say how many films and distinct patients stand behind it.
    ``calibrated`` is the calibrated probability from the model's calibration (None without a map).
    """

    finding: str
    share: float
    depth: int = 0
    parent: str | None = None
    neighbours: int = 0
    patients: int = 0
    calibrated: float | None = None


class QueryView(BaseModel):
    """The query's view: where it came from and the family used to pick neighbours."""

    view: str | None = None
    family: str | None = None
    source: str = "unknown"  # "given" | "dicom" | "index" | "classifier" | "unknown"
    #: the classifier's lateral score (class-balanced, not a calibrated probability; lateral at >= its threshold)
    lateral_score: float | None = None


class OODFlag(BaseModel):
    """The out-of-distribution guard's verdict on a query (:mod:`embed.guard`)."""

    score: float = Field(description="in-distribution score in [0,1]: share of validation chest films that look "
                                     "less typical than the query (the smaller of the pixel and neighbour tests)")
    flagged: bool
    reason: str | None = Field(None, description="'not a chest radiograph' or 'unlike anything in this index'")
    pixel_score: float | None = Field(None, description="tail probability of the pixel test (None for an id query)")
    neighbour_score: float | None = Field(None, description="tail probability of the nearest-neighbour similarity")
    nearest_similarity: float | None = Field(None, description="cosine similarity to the nearest indexed case")


class CalibratedVote(BaseModel):
    """One finding's calibrated probability and the neighbours behind it."""

    probability: float | None = Field(description="isotonic-calibrated probability; None where the finding "
                                                  "had too few training films for a map (see raw vote)")
    raw: float = Field(description="the similarity-weighted vote share (the `vote` field)")
    neighbours: int = Field(description="neighbours among the hits that have this finding")
    of: int = Field(description="neighbours that voted (hits)")


@dataclass
class SearchResult:
    """Neighbours, their vote and prognosis summary, and the query's attention and standardized image.

    ``attention`` and ``query_image`` are (S,S) float32 in [0,1] (None for an id query
    without attention, or when ``with_attention=False``).
    """

    hits: list[Hit]
    vote: dict[str, float]
    prognosis: dict[str, OutcomeSummary]
    attention: np.ndarray | None = None
    query_image: np.ndarray | None = None
    query_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ood: OODFlag | None = None
    calibrated: dict[str, CalibratedVote] = field(default_factory=dict)
    vote_detail: list[VoteShare] = field(default_factory=list)
    query_view: QueryView | None = None
    query_facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, with_arrays: bool = False) -> dict[str, Any]:
        """JSON-safe dict (arrays left out unless asked, as nested lists)."""
        d: dict[str, Any] = {
            "hits": [h.model_dump() for h in self.hits],
            "vote": dict(self.vote),
            "prognosis": {k: v.model_dump() for k, v in self.prognosis.items()},
            "query_id": self.query_id,
            "meta": dict(self.meta),
            "ood": None if self.ood is None else self.ood.model_dump(),
            "calibrated_vote": {k: v.model_dump() for k, v in self.calibrated.items()},
            "vote_detail": [v.model_dump() for v in self.vote_detail],
            "query_view": None if self.query_view is None else self.query_view.model_dump(),
            "query_facts": dict(self.query_facts),
        }
        if with_arrays:
            d["attention"] = None if self.attention is None else self.attention.tolist()
            d["query_image"] = None if self.query_image is None else self.query_image.tolist()
        return d
