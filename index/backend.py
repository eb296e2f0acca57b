"""Which vector engine an index folder uses, behind one small interface: FAISS (default) or Milvus.

The builder and the search engine talk to a :class:`VectorBackend`; the manifest's
``backend`` field says which one a folder was built with. FAISS keeps ``index.faiss`` in
the folder and filters through id masks; Milvus keeps a collection (named in the
manifest) and filters by boolean expressions pushed into the search. Everything else of
the folder (store, vectors, manifest, atomic swap) is shared.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from embed.errors import IndexStateError
from index.manifest import Manifest
from index.selection import MILVUS_ONLY_TYPES, IndexSpec, IndexTypeError

if TYPE_CHECKING:
    from index.faiss_index import VectorIndex
    from index.milvus_index import MilvusIndex
    from index.store import MetadataStore

log = logging.getLogger(__name__)

BACKENDS = ("faiss", "milvus")


@runtime_checkable
class VectorBackend(Protocol):
    """What the builder and the engine need from a vector engine."""

    kind: str  # "faiss" | "milvus"
    spec: IndexSpec

    @property
    def ntotal(self) -> int: ...

    @property
    def can_remove(self) -> bool: ...


def default_milvus_uri(index_dir: str | Path) -> str:
    """Without --milvus-uri: a Milvus Lite file beside the index folder (``DIR.milvus.db``)."""
    p = Path(index_dir).resolve()
    return str(p.with_name(p.name + ".milvus.db"))


def backend_params(backend: str, index_dir: str | Path, milvus_uri: str | None) -> dict[str, Any]:
    """Manifest ``backend_params`` for a new build (checks the backend name and the URI)."""
    if backend not in BACKENDS:
        raise IndexStateError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "faiss":
        if milvus_uri:
            raise IndexStateError("--milvus-uri needs --backend milvus")
        return {}
    from index.milvus_index import resolve_uri

    return {"uri": resolve_uri(milvus_uri or default_milvus_uri(index_dir))}


def check_type(backend: str, spec: IndexSpec) -> None:
    if backend == "faiss" and spec.type in MILVUS_ONLY_TYPES:
        raise IndexTypeError(f"index type {spec.type} exists only on the Milvus backend (--backend milvus "
                             "--milvus-uri http://host:19530, a Milvus server with GPUs)")


def create_filled(manifest: Manifest, spec: IndexSpec, store: MetadataStore, ids: np.ndarray,
                  vectors: np.ndarray) -> VectorIndex | MilvusIndex:
    """A new backend index holding ``vectors`` under ``ids`` (FAISS in memory, or a new Milvus collection).

    For Milvus the collection name goes into ``manifest.backend_params``; if filling fails the
    new collection is dropped, so nothing is left behind.
    """
    check_type(manifest.backend, spec)
    if manifest.backend == "milvus":
        from index.milvus_index import MilvusIndex

        mi = MilvusIndex.create(manifest.backend_params["uri"], spec, manifest.embed_dim)
        try:
            rows = {r.id: r for r in store.get(ids.tolist())}
            mi.insert([rows[int(i)] for i in ids], vectors)
        except BaseException:
            mi.drop()
            raise
        manifest.backend_params["collection"] = mi.collection
        return mi
    from index.faiss_index import VectorIndex

    if not len(ids):
        return VectorIndex.create(IndexSpec("flat"), manifest.embed_dim)
    return VectorIndex.build(spec, vectors, ids, manifest.embed_dim)


def open_backend(index_dir: str | Path, manifest: Manifest, *, mmap: bool | None = None,
                 use_gpu: bool | None = None) -> VectorIndex | MilvusIndex:
    """The backend index of a folder, as its manifest describes it."""
    spec = IndexSpec(manifest.index_type, dict(manifest.index_params))
    if manifest.backend == "milvus":
        from index.milvus_index import MilvusIndex

        p = manifest.backend_params
        if not p.get("uri") or not p.get("collection"):
            raise IndexStateError(f"{index_dir}: the manifest names no Milvus collection; rebuild the index")
        return MilvusIndex.open(p["uri"], p["collection"], spec)
    if manifest.backend != "faiss":
        raise IndexStateError(f"{index_dir}: unknown backend {manifest.backend!r}; upgrade cxr-search")
    from index.faiss_index import VectorIndex

    return VectorIndex.load(index_dir, spec, mmap=mmap, use_gpu=use_gpu)


def drop_replaced(old: Manifest | None, new: Manifest) -> None:
    """After a swap: drop the Milvus collection the new folder no longer names (the FAISS file went with the folder)."""
    if old is None or old.backend != "milvus":
        return
    p = old.backend_params
    if not p.get("collection") or (new.backend == "milvus" and new.backend_params.get("collection") == p["collection"]):
        return
    from index.milvus_index import MilvusIndex

    try:
        MilvusIndex.open(p["uri"], p["collection"], IndexSpec(old.index_type, dict(old.index_params))).drop()
        log.info("dropped the replaced Milvus collection %s", p["collection"])
    except IndexStateError as exc:  # already gone, or the server is unreachable: nothing to clean
        log.warning("replaced Milvus collection not dropped: %s", exc)


def describe(vindex: VectorIndex | MilvusIndex) -> dict[str, Any]:
    """Backend facts for stats: which engine, where it searches."""
    if getattr(vindex, "kind", "faiss") == "milvus":
        return {"backend": "milvus", "milvus": vindex.describe(), "faiss_device": "milvus"}
    from index.faiss_index import gpu_count

    return {"backend": "faiss",
            "faiss_device": "gpu" if (gpu_count() > 0 and vindex.spec.type != "hnsw") else "cpu"}
