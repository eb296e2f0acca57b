"""Search with a film that lives in a PACS, and hand the similar cases back to it as a KOS document.

The query is fetched with WADO-RS and searched as the very bytes an upload of
the same file would give, so the hits are the same. Neighbours indexed from the
same PACS (source ``dicomweb``, same keyed PACS address) are referenced in the
Key Object Selection document after a QIDO-RS check that they are still there;
their UIDs are read from the reader's local copy, never from the index store,
which holds only keyed hashes.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embed.dicomweb import PacsClient, fetch_query, find_instances, store_instance, uid_key
from embed.kos import Neighbour, build_kos, describe
from index.schemas import Hit, SearchFilters, SearchResult

if TYPE_CHECKING:  # the engine module loads FAISS; this module only calls it
    from pydicom import Dataset

    from index.engine import SearchEngine

log = logging.getLogger(__name__)


@dataclass
class PacsSearch:
    """A search by study: the engine's result, the query's keyed id and, when asked, the KOS document."""

    result: SearchResult
    query_key: str
    kos: Dataset | None = None
    referenced: int = 0
    stored: bool = False


def _header(data: bytes) -> Any:
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


def pacs_neighbours(engine: SearchEngine, client: PacsClient, hits: list[Hit]) -> list[Neighbour]:
    """The hits that are instances of this PACS and are still in it, with their UIDs."""
    out = []
    for hit in hits:
        case = hit.case
        if case.source != "dicomweb" or (case.extra or {}).get("pacs") != client.key:
            continue
        path = engine.store.image_path(case.id)
        try:
            ds = _header(Path(path).read_bytes()) if path else None
        except OSError:
            ds = None
        if ds is None or "SOPInstanceUID" not in ds:
            log.info("case %d: the local copy is gone; not referenced", case.id)
            continue
        sop = str(ds.SOPInstanceUID)
        if uid_key(sop) != (case.extra or {}).get("instance"):
            continue
        still = find_instances(client, modalities=(str(ds.get("Modality", "CR")),), study=str(ds.StudyInstanceUID),
                               series=str(ds.SeriesInstanceUID))
        if any(r.sop == sop for r in still):
            out.append(Neighbour(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), sop, str(ds.SOPClassUID),
                                 hit.rank, float(hit.similarity)))
    return out


def search_study(engine: SearchEngine, client: PacsClient, *, study: str | None = None, series: str | None = None,
                 k: int = 10, filters: SearchFilters | None = None, exclude_same_patient: bool = True,
                 same_patient_only: bool = False, with_attention: bool = False, make_kos: bool = False,
                 store: bool = False, view_scope: str = "same", query_view: str | None = None) -> PacsSearch:
    """Fetch the study's (or series') radiograph, search with it; build and optionally STOW the KOS note."""
    ref, data = fetch_query(client, study=study, series=series)
    result = engine.search(data, k=k, filters=filters, exclude_same_patient=exclude_same_patient,
                           same_patient_only=same_patient_only, with_attention=with_attention,
                           view_scope=view_scope, query_view=query_view)
    out = PacsSearch(result=result, query_key=ref.key)
    log.info("searched with %s of PACS %s: %d hits", ref.key, client.key, len(result.hits))
    if make_kos or store:
        neighbours = pacs_neighbours(engine, client, result.hits)
        text = describe(result.vote, result.prognosis, len(result.hits), len(neighbours))
        out.kos, out.referenced = build_kos(_header(data), neighbours, text), len(neighbours)
        if store:
            store_instance(client, out.kos)
            out.stored = True
    return out
