"""SearchEngine: query by image or case id -> neighbours, kNN vote, prognosis summary, attention.

Filtering happens before the kNN search (the allowed ids come from the store), so
k hits come back whenever k cases match. Small allowed sets (one patient, a rare
finding) are searched exactly over the stored vectors; large ones through a FAISS
ID selector, with an exact fallback if the approximate index returns too few.
A query's own case is never returned, nor by default its patient's other cases.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embed.errors import IndexStateError
from index.backend import describe, open_backend
from index.errors import CaseNotFoundError, QueryError
from index.faiss_index import VectorIndex, set_search_threads
from index.filters import FilterColumns, filters_to_milvus, quote
from index.generations import PinnedGeneration, Pointer, pin
from index.layout import disk_size
from index.manifest import Manifest, check_compatible
from index.evidence import add_patient_counts, vote_hierarchy
from index.prepared import PreparedQuery
from index.guarding import QueryJudge
from index.schemas import CaseRow, EngineStats, Hit, QueryView, SearchFilters, SearchResult
from index.selection import RERANK_FACTOR, rerank_depth  # noqa: F401 - RERANK_FACTOR re-exported
from index.store import STORE_FILE, SQLiteStore
from index.vectors import VectorTable, rerank
from index.views import ViewClassifier, find_view_classifier, view_family
from index.voting import knn_vote, prognosis_summary

if TYPE_CHECKING:  # annotations only (imported where used, lazily)
    from embed.inference import EmbeddedQuery, Embedder
    from index.milvus_index import MilvusIndex

log = logging.getLogger(__name__)

#: Allowed sets up to this size are searched exactly (numpy over the stored vectors); larger ones
#: through FAISS with an id bitmap (at 10^6 cases, gathering 10^4 vectors cost more than IVF).
EXACT_SUBSET_MAX = 5_000
MAX_K = 1000
#: The query's de-identified facts returned with a search (what the reader of the film keeps).
QUERY_FACTS = ("age", "sex", "view", "body_part", "modality")
VIEW_SCOPES = ("same", "any")


def _upsample01(attn: np.ndarray, size: int) -> np.ndarray:
    """Attention [h,w] -> [size,size] in [0,1] (bilinear, then min-max)."""
    import cv2

    a = cv2.resize(np.asarray(attn, dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(a)


class _Query:
    """A resolved query: its vector, and what is known about it (own case id, patient, image)."""

    def __init__(self, vector: np.ndarray, case_id: int | None, patient: str | None,
                 attention: np.ndarray | None = None, image: np.ndarray | None = None,
                 standardized: np.ndarray | None = None, facts: dict[str, Any] | None = None,
                 view_source: str = "unknown") -> None:
        self.vector, self.case_id, self.patient = vector, case_id, patient
        self.attention, self.image = attention, image
        self.standardized = standardized  # what the OOD guard's pixel test reads (None for an id query)
        self.chroma: float | None = None  # the decoded file's colourfulness (embed.image.chroma), for the guard
        self.facts = {k: v for k, v in (facts or {}).items() if k in QUERY_FACTS and v not in (None, "")}
        self.view_source = view_source


class SearchEngine:
    """Similar-case search over one index folder; safe to share between threads."""

    def __init__(self, index_dir: Path, manifest: Manifest, store: SQLiteStore, vindex: VectorIndex | MilvusIndex,
                 table: VectorTable, embedder: Embedder, pinned: PinnedGeneration | None = None,
                 view_classifier: ViewClassifier | None = None) -> None:
        self.index_dir = index_dir
        self.view_classifier = view_classifier
        # The one generation every part below comes from; writers keep it on disk while pinned.
        self._pinned = pinned
        self.generation = pinned.name if pinned is not None else ""
        self._size_bytes = disk_size(pinned.path if pinned is not None else index_dir)
        self.manifest = manifest
        self.store = store
        self.vindex = vindex
        self.table = table
        self.embedder = embedder
        self._model_lock = threading.Lock()
        # A generation never changes (edits make a new one), so the tombstones are read once
        # instead of scanning the table on every query.
        self._deleted = frozenset(store.deleted_ids().tolist())
        self._columns: FilterColumns | None = None
        self._columns_lock = threading.Lock()
        self.judge = QueryJudge.for_model(getattr(embedder, "model_path", None), embedder.model_sha256)

    @property
    def pointer(self) -> Pointer | None:
        """The pinned generation's pointer (name and manifest checksum), None for an engine built by hand."""
        return self._pinned.pointer if self._pinned is not None else None

    @property
    def columns(self) -> FilterColumns:
        """In-memory filter columns, loaded on the first filtered query (one table scan)."""
        with self._columns_lock:
            if self._columns is None:
                self._columns = self.store.filter_columns()
            return self._columns

    @classmethod
    def open(cls, index_dir: str | Path, model_path: str | Path | None = None, device: str | None = None, *,
             embedder: Embedder | None = None, mmap: bool | None = None) -> SearchEngine:
        """Open an index with its model; ConfigMismatchError if the model differs from the one it was built with.

        Without ``model_path`` the model recorded in the manifest is used when it still exists,
        else the released model.
        """
        from index.builder import open_embedder

        index_dir = Path(index_dir).resolve()
        pinned = pin(index_dir)
        try:
            pinned.verify()  # checksums of every file + SQLite quick_check: damage is an error now, not later
            gen = pinned.path
            manifest = Manifest.read(gen)
            if model_path is None and manifest.model_path and Path(manifest.model_path).is_file():
                model_path = manifest.model_path
            if embedder is None:
                embedder = open_embedder(model_path, device=device)
            if model_path is None:
                from embed.models import RELEASED_MODEL_PATH

                model_path = RELEASED_MODEL_PATH
            check_compatible(manifest, model_sha256=embedder.model_sha256, std_cfg=embedder.std_cfg,
                             index_dir=index_dir)
            store = SQLiteStore(gen / STORE_FILE, read_only=True)
            set_search_threads()
            vindex = open_backend(gen, manifest, mmap=mmap)
            table = VectorTable(gen)
            if table.dim != manifest.embed_dim:
                raise IndexStateError(f"{index_dir}: stored vectors have {table.dim} dims, manifest says "
                                      f"{manifest.embed_dim}; rebuild the index with `cxr index build`")
            view_clf = find_view_classifier(embedder.model_sha256, manifest.embed_dim, index_dir=gen,
                                            model_path=model_path)
        except BaseException:
            pinned.close()
            raise
        log.info("opened index %s (generation %s): %d cases, %s %s index, model %s…", index_dir, pinned.name,
                 manifest.counts.get("cases", 0), manifest.backend, manifest.index_type, manifest.model_sha256[:12])
        return cls(index_dir, manifest, store, vindex, table, embedder, pinned=pinned, view_classifier=view_clf)

    def close(self) -> None:
        """Release the SQLite snapshot and the pin (writers may then delete this generation)."""
        self.store.close()
        if self._pinned is not None:
            self._pinned.close()

    # -- queries -----------------------------------------------------------------------------
    def _embed_image(self, src: str | Path | bytes) -> EmbeddedQuery:
        with self._model_lock:  # one forward at a time: torch on CPU already uses every core
            return self.embedder.embed_image(src)

    def _resolve(self, query: str | Path | bytes | int, with_attention: bool) -> _Query:
        if isinstance(query, (bool, np.bool_)):
            raise QueryError("a query is an image (path or bytes) or an indexed case id (int), not a boolean")
        if isinstance(query, (int, np.integer)):
            cid = int(query)
            if self.store.get_one(cid) is None or not self.table.has(cid):
                raise CaseNotFoundError(f"no indexed case has id {cid}; list cases with `cxr index stats` or search by image")
            row = self.store.get_one(cid)
            q = _Query(self.table.get(np.array([cid]))[0], cid, self.store.patient_of(cid),
                       facts=row.model_dump() if row is not None else None, view_source="index")
            path = self.store.image_path(cid) if with_attention else None
            if path and Path(path).is_file():
                try:
                    eq = self._embed_image(path)
                    q.attention, q.image = _upsample01(eq.attention, eq.standardized.shape[0]), eq.standardized
                except Exception as exc:  # noqa: BLE001 - attention is a bonus for an id query
                    log.warning("attention for case %d unavailable: %s", cid, type(exc).__name__)
            return q
        prepared = query if isinstance(query, PreparedQuery) else self.prepare(query)
        if not prepared.embedded:
            self.embed_prepared([prepared])
        own = self.store.sha_to_id_one(prepared.sha256)  # the very image is indexed: treat it as that case
        patient = prepared.meta.get("patient") or (self.store.patient_of(own) if own is not None else None)
        q = _Query(np.asarray(prepared.embedding, np.float32), own, patient, standardized=prepared.standardized,
                   facts=prepared.meta, view_source="dicom")
        q.chroma = prepared.meta.get("chroma")
        if own is not None and "view" not in q.facts:  # a PNG of an indexed case: its recorded view
            row = self.store.get_one(own)
            if row is not None and row.view:
                q.facts["view"], q.view_source = row.view, "index"
        if with_attention:
            q.attention = _upsample01(prepared.attention, prepared.standardized.shape[0])
            q.image = prepared.standardized
        return q

    def prepare(self, query: str | Path | bytes) -> PreparedQuery:
        """Read, standardize and hash a query image without running the model (thread-safe)."""
        if isinstance(query, (str, Path)):
            if not Path(query).is_file():
                raise QueryError(f"query image {query} not found; give an image file or an indexed case id")
            raw = Path(query).read_bytes()
        elif isinstance(query, (bytes, bytearray, memoryview)):
            raw = bytes(query)
        else:
            raise QueryError(f"a query is an image (path or bytes) or a case id, not {type(query).__name__}")
        std, meta = self.embedder.prepare_image(raw)
        return PreparedQuery(standardized=std, meta=meta, sha256=hashlib.sha256(raw).hexdigest())

    def blank_query(self) -> PreparedQuery:
        """A black standardized image, e.g. to warm the model up before the first request."""
        size = int(self.embedder.std_cfg.size)
        return PreparedQuery(standardized=np.zeros((size, size), np.float32), meta={}, sha256="")

    def embed_prepared(self, batch: list[PreparedQuery]) -> None:
        """One forward pass over all ``batch`` images; fills each one's embedding and attention."""
        if not batch:
            return
        with self._model_lock:  # one forward at a time: torch on CPU already uses every core
            emb, attn = self.embedder.embed_batch(np.stack([p.standardized for p in batch]))
        for p, e, a in zip(batch, emb, attn):
            p.embedding, p.attention = e, a

    def _neighbours(self, q: _Query, k: int, filters: SearchFilters | None, exclude_same_patient: bool,
                    same_patient_only: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        excluded: set[int] = set(self._deleted)
        if q.case_id is not None:
            excluded.add(q.case_id)
        if q.patient and (exclude_same_patient or same_patient_only):
            patient_ids = self.store.ids_for_patient(q.patient)
        else:
            patient_ids = np.zeros(0, np.int64)
        has_filters = filters is not None and not filters.is_empty()
        if not same_patient_only and exclude_same_patient:
            excluded |= set(patient_ids.tolist())
        meta: dict[str, Any] = {"index_type": self.vindex.spec.type, "excluded": len(excluded), "exact": False}
        ex = np.fromiter(excluded, np.int64, len(excluded))
        fetch = self._fetch(k)
        if self.vindex.kind == "milvus":
            return self._pushed_down(q, k, fetch, filters if has_filters else None, ex, same_patient_only, meta)
        if same_patient_only or has_filters:
            if same_patient_only:
                if not q.patient:
                    raise QueryError("same-patient search needs a query whose patient is known: an indexed case "
                                     "id, an indexed image, or a DICOM with a patient id")
                mask = np.zeros(self.columns.size, bool)
                mask[patient_ids[patient_ids < self.columns.size]] = True
                mask &= self.columns.mask(filters if has_filters else None)
            else:
                mask = self.columns.mask(filters)
            mask[ex[ex < len(mask)]] = False
            n_allowed = int(mask.sum())
            meta["candidates"] = n_allowed
            if n_allowed <= EXACT_SUBSET_MAX or self.vindex.spec.type == "flat":
                meta["exact"] = True
                sims, ids = self.table.exact_search(q.vector, k, np.flatnonzero(mask))
                return sims, ids, meta
            sims, ids = self.vindex.search(q.vector[None], fetch, allowed_mask=mask)
            want = min(k, n_allowed)
        else:
            mask = None
            sims, ids = self.vindex.search(q.vector[None], fetch, excluded=ex if len(ex) else None)
            want = min(k, len(self.table) - len(ex))
        sims, ids = sims[0], ids[0]
        keep = ids >= 0
        sims, ids = sims[keep], ids[keep]
        if fetch > k:  # compressed codes: re-score the candidates exactly
            sims, ids = rerank(q.vector, ids, self.table.get(ids), k)
            meta["reranked"] = int(keep.sum())
        if len(ids) < want:  # the approximate index missed eligible cases: exact search over them
            pool = np.flatnonzero(mask) if mask is not None else np.setdiff1d(self.table.ids, ex)
            meta["exact"] = True
            sims, ids = self.table.exact_search(q.vector, k, pool)
        return sims, ids, meta

    def _pushed_down(self, q: _Query, k: int, fetch: int, filters: SearchFilters | None, ex: np.ndarray,
                     same_patient_only: bool, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Milvus: filters, exclusions and the same-patient restriction become one boolean expression."""
        clauses = [filters_to_milvus(filters, self.columns.views())] if filters is not None else []
        if same_patient_only:
            if not q.patient:
                raise QueryError("same-patient search needs a query whose patient is known: an indexed case "
                                 "id, an indexed image, or a DICOM with a patient id")
            clauses.append(f"patient == {quote(q.patient)}")
        if len(ex):
            clauses.append(f"id not in [{', '.join(str(int(i)) for i in np.sort(ex))}]")
        expr = " and ".join(c for c in clauses if c)
        sims, ids = self.vindex.search(q.vector, fetch, expr)
        if fetch > k:  # compressed codes: re-score the candidates exactly
            sims, ids = rerank(q.vector, ids, self.table.get(ids), k)
            meta["reranked"] = int(len(ids))
        meta.update({"exact": self.vindex.spec.type == "flat", "filter": bool(expr)})
        return sims, ids, meta

    def _fetch(self, k: int) -> int:
        """How many candidates to ask the index for (more for compressed codes, re-ranked exactly)."""
        return rerank_depth(self.vindex.spec, k)

    def query_view(self, q: _Query, given: str | None = None) -> QueryView:
        """The query's view: given by the caller, else DICOM/indexed metadata, else the classifier."""
        if given:
            return QueryView(view=given, family=view_family(given), source="given")
        view = q.facts.get("view")
        if view and view_family(view):
            return QueryView(view=view, family=view_family(view), source=q.view_source)
        if self.view_classifier is not None:
            score = float(self.view_classifier.p_lateral(q.vector)[0])
            family = "lateral" if score >= self.view_classifier.threshold else "frontal"
            return QueryView(view=view, family=family, source="classifier", lateral_score=round(score, 4))
        return QueryView(view=view)

    def search(self, query: str | Path | bytes | int | PreparedQuery, k: int = 10,
               filters: SearchFilters | None = None, exclude_same_patient: bool = True,
               same_patient_only: bool = False, with_attention: bool = True, *, query_view: str | None = None,
               view_scope: str = "same") -> SearchResult:
        """The k most similar cases with their vote, prognosis summary and the query's attention map.

        ``view_scope="same"`` (default) keeps neighbours of the query's view family (frontal or
        lateral; cases of unknown view stay eligible) unless ``filters.view`` names views
        explicitly; ``"any"`` searches every view. ``query_view`` overrides the query's own view.
        """
        k = int(k)
        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}, not {k}")
        if view_scope not in VIEW_SCOPES:
            raise QueryError(f"view_scope must be one of {', '.join(VIEW_SCOPES)}, not {view_scope!r}")
        if isinstance(filters, dict):
            filters = SearchFilters(**filters)
        q = self._resolve(query, with_attention)
        qv = self.query_view(q, query_view)
        if view_scope == "same" and qv.family and not (filters is not None and filters.view):
            filters = (filters or SearchFilters()).model_copy(update={"view_family": qv.family})
        sims, ids, meta = self._neighbours(q, k, filters, exclude_same_patient, same_patient_only)
        meta["view_family"] = filters.view_family if filters is not None else None
        rows = {r.id: r for r in self.store.get(ids.tolist())}
        hits = [Hit(case=rows[int(i)], similarity=float(s), rank=0) for s, i in zip(sims, ids) if int(i) in rows]
        for rank, hit in enumerate(hits, 1):
            hit.rank = rank
        vote = knn_vote(hits)
        calibrated = self.judge.calibrate(vote, hits)
        detail = vote_hierarchy(vote, hits)
        for line in detail:
            cal = calibrated.get(line.finding)
            if cal is not None and cal.probability is not None:
                line.calibrated = cal.probability
        return SearchResult(hits=hits, vote=vote, prognosis=add_patient_counts(prognosis_summary(hits), hits),
                            attention=q.attention, query_image=q.image, query_id=q.case_id, meta=meta,
                            ood=self.judge.verdict(q.standardized, self._nearest_similarity(q), q.chroma),
                            calibrated=calibrated, vote_detail=detail, query_view=qv, query_facts=dict(q.facts))

    def _nearest_similarity(self, q: _Query) -> float | None:
        """Similarity of the query to its nearest live indexed case other than itself (no filters), for the guard."""
        if not self.judge.guard or len(self.table) == 0:
            return None
        # the same neighbour path as a search (either backend), without filters or same-patient rules
        sims, ids, _ = self._neighbours(q, 1, None, exclude_same_patient=False, same_patient_only=False)
        return float(sims[0]) if len(ids) and ids[0] >= 0 else None

    def classify(self, query: str | Path | bytes | int | PreparedQuery, k: int = 10,
                 filters: SearchFilters | None = None, *, query_view: str | None = None,
                 view_scope: str = "same") -> dict[str, float]:
        """The kNN vote only (finding -> score in [0,1]); neighbours of the query's view family by default."""
        return self.search(query, k=k, filters=filters, with_attention=False, query_view=query_view,
                           view_scope=view_scope).vote

    def embed(self, query: str | Path | bytes | int | PreparedQuery) -> np.ndarray:
        """The query's unit embedding [D] (the stored one for a case id)."""
        return self._resolve(query, with_attention=False).vector

    # -- cases -------------------------------------------------------------------------------
    def get_case(self, case_id: int) -> CaseRow | None:
        return self.store.get_one(int(case_id))

    def list_cases(self, filters: SearchFilters | None = None, offset: int = 0,
                   limit: int = 50) -> tuple[int, list[CaseRow]]:
        """(total matching, one page in id order) of the live cases matching ``filters``."""
        if isinstance(filters, dict):
            filters = SearchFilters(**filters)
        if offset < 0 or not 1 <= limit <= MAX_K:
            raise QueryError(f"offset must be >= 0 and limit between 1 and {MAX_K}")
        return self.store.list_cases(filters, int(offset), int(limit))

    def case_image(self, case_id: int, size: int | None = None) -> bytes:
        """The case's standardized image as PNG bytes (optionally resized to ``size``); served by id only."""
        import cv2

        from embed.standardize import load_standardized, to_png_bytes

        path = self.store.image_path(int(case_id))
        if path is None:
            raise CaseNotFoundError(f"no indexed case has id {case_id}")
        if not Path(path).is_file():
            raise IndexStateError(f"the image of case {case_id} is no longer where it was indexed; "
                                  "restore the dataset folder or rebuild the index")
        img = load_standardized(path, self.embedder.std_cfg)
        if size is not None:
            size = int(size)
            if not 8 <= size <= 4096:
                raise QueryError(f"size must be between 8 and 4096 pixels, not {size}")
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if size < img.shape[0] else cv2.INTER_LINEAR)
        return to_png_bytes(img)

    def stats(self) -> EngineStats:
        """Counts per source/view/sex/finding, index type and parameters, device, size on disk."""
        return EngineStats(
            **self.store.stats(),
            index_type=self.manifest.index_type,
            index_params=self.manifest.index_params,
            embed_dim=self.manifest.embed_dim,
            model_sha256=self.manifest.model_sha256,
            std_config=self.manifest.std_config,
            vectors=self.vindex.ntotal,
            **describe(self.vindex),
            size_bytes=self._size_bytes,
            generation=self.generation,
            updated_unix=self.manifest.updated_unix,
        )
