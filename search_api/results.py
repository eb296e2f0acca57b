"""Engine results -> response models (runs in the worker thread: PNG encoding is CPU work)."""

from __future__ import annotations

from index.schemas import CaseRow, SearchResult
from search_api.render import attention_png, b64, grey_png
from search_api.schemas import CaseOut, HitOut, OutcomeOut, SearchResponse


def case_out(case: CaseRow) -> CaseOut:
    """A CaseRow with its image URL (the only way a client reaches an image; CaseRow has no file location)."""
    return CaseOut(**case.model_dump(), image_url=f"/v1/cases/{case.id}/image")


def search_response(result: SearchResult, k: int, model_sha: str | None) -> SearchResponse:
    """Serialise a SearchResult; arrays become base64 PNGs."""
    query_png = att_png = None
    if result.query_image is not None:
        query_png = b64(grey_png(result.query_image))
    if result.attention is not None:
        size = result.query_image.shape[0] if result.query_image is not None else None
        att_png = b64(attention_png(result.attention, size))
    hits = [HitOut(rank=h.rank, similarity=float(h.similarity), case=case_out(h.case)) for h in result.hits]
    return SearchResponse(
        k=k,
        count=len(hits),
        hits=hits,
        vote={str(k_): float(v) for k_, v in result.vote.items()},
        prognosis={name: OutcomeOut(**o.model_dump()) for name, o in result.prognosis.items()},
        attention_png=att_png,
        query_png=query_png,
        model_sha256=model_sha,
        ood=result.ood,
        calibrated_vote=dict(result.calibrated),
    )
