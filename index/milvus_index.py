"""Milvus backend: the vectors and the filter fields of an index folder in a Milvus collection.

The index folder keeps its manifest, ``store.sqlite`` and ``vectors.npy`` (so rebuilds never
re-embed and id queries need no round trip); the FAISS file is replaced by a collection that
holds, per case, the unit vector, the filter fields as scalar fields (view, sex, age, source,
findings, patient pseudonym, day offset; strings lower-cased so filters compare like the FAISS
side) and the public case as JSON. Filters become Milvus boolean expressions and are pushed
down into the vector search, so k hits come back whenever k cases match.

``uri`` is a local ``*.db`` file (Milvus Lite, embedded: tests and laptops; one process at a
time) or ``http://host:19530`` (Milvus standalone or cluster: several writers, replicas).
Every build or rebuild writes a new collection ``cxr_<hex>`` and the manifest names it, so the
folder swap switches collections atomically; the replaced collection is dropped after the swap.
Consistency level "Strong": every search sees every insert and delete before it. On the Milvus
2.3 standalone it costs a time tick (~200 ms) per search whatever the index (docs/benchmarks.md);
"Session" was tried and returned too few hits right after a delete on that server, so it stays.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embed.errors import IndexStateError, require
from index.schemas import CaseRow
from index.selection import IndexSpec, IndexTypeError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

log = logging.getLogger(__name__)

INSTALL = "pip install 'cxr-search[distributed]'"
#: Our index types -> Milvus index types. GPU_* need a Milvus server on GPU nodes.
MILVUS_TYPES = {"flat": "FLAT", "ivf": "IVF_FLAT", "ivfsq": "IVF_SQ8", "ivfpq": "IVF_PQ", "hnsw": "HNSW",
                "gpu_cagra": "GPU_CAGRA", "gpu_ivf_pq": "GPU_IVF_PQ"}
#: Index types Milvus Lite accepts (measured with milvus-lite 3.2: GPU types are refused).
LITE_TYPES = ("flat", "ivf", "ivfpq", "hnsw")
_STR_MAX = 256
#: Unknown numbers are sentinels, not nulls: nullable fields need Milvus >= 2.5 and the embedded
#: server package is 2.3. Ages are >= 0, so every age filter also asks ``age >= 0``.
UNKNOWN_AGE = -1.0
UNKNOWN_DAY = -1.0e9
_INSERT_BATCH = 2_000
_clients: dict[str, MilvusClient] = {}
_clients_lock = threading.Lock()


def is_lite(uri: str) -> bool:
    """A local file is Milvus Lite; a URL is a Milvus server."""
    return "://" not in uri


def resolve_uri(uri: str) -> str:
    """Lite paths become absolute (the manifest must work from any directory); URLs stay as given."""
    if not uri:
        raise IndexStateError("--milvus-uri is empty: give a local file such as ./cases.db or http://host:19530")
    if is_lite(uri):
        p = Path(uri).expanduser().resolve()
        if p.suffix != ".db":
            raise IndexStateError(f"a Milvus Lite URI is a file ending in .db, not {uri!r}; "
                                  "or give a server URL such as http://host:19530")
        p.parent.mkdir(parents=True, exist_ok=True)
        return str(p)
    return uri


def connect(uri: str) -> MilvusClient:
    """One MilvusClient per URI per process (a Lite file can be opened by one process only)."""
    pymilvus = require("pymilvus", INSTALL)
    with _clients_lock:
        client = _clients.get(uri)
        if client is None:
            try:
                client = pymilvus.MilvusClient(uri=uri)
            except Exception as exc:  # noqa: BLE001 - connection errors of every kind
                hint = ("another process (a running `cxr serve`?) may hold this Milvus Lite file"
                        if is_lite(uri) else "is the Milvus server running and reachable?")
                raise IndexStateError(f"cannot open Milvus at {uri}: {type(exc).__name__}: {exc}; {hint}") from exc
            _clients[uri] = client
        return client


def _lc(v: str | None) -> str:
    return (v or "").lower()[:_STR_MAX]


def _entity(row: CaseRow, vector: np.ndarray) -> dict[str, Any]:
    return {
        "id": int(row.id), "vector": np.asarray(vector, np.float32).tolist(),
        "view": _lc(row.view), "sex": _lc(row.sex), "source": _lc(row.source), "patient": row.patient or "",
        "age": UNKNOWN_AGE if row.age is None else float(row.age),
        "day_offset": UNKNOWN_DAY if row.day_offset is None else float(row.day_offset),
        "findings": [_lc(f) for f in row.findings][:64],
        "case": row.model_dump(mode="json"),
    }


def milvus_params(spec: IndexSpec) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(Milvus index type, build params, search params) for one of our index specs."""
    p = spec.params
    kind = MILVUS_TYPES.get(spec.type)
    if kind is None:
        raise IndexTypeError(f"index type {spec.type!r} has no Milvus equivalent: choose one of {', '.join(MILVUS_TYPES)}")
    if spec.type == "flat":
        return kind, {}, {}
    if spec.type in ("ivf", "ivfsq"):
        return kind, {"nlist": int(p["nlist"])}, {"nprobe": int(p["nprobe"])}
    if spec.type in ("ivfpq", "gpu_ivf_pq"):
        return kind, {"nlist": int(p["nlist"]), "m": int(p["pq_m"]), "nbits": int(p.get("pq_bits", 8))}, \
            {"nprobe": int(p["nprobe"])}
    if spec.type == "hnsw":
        return kind, {"M": int(p["M"]), "efConstruction": int(p["efConstruction"])}, {"ef": int(p["efSearch"])}
    return kind, {"intermediate_graph_degree": int(p.get("intermediate_graph_degree", 64)),
                  "graph_degree": int(p.get("graph_degree", 32))}, {"itopk_size": int(p.get("itopk_size", 128))}


class MilvusIndex:
    """One Milvus collection of unit vectors keyed by case id, with filter fields; filters pushed down."""

    kind = "milvus"

    def __init__(self, client: MilvusClient, uri: str, collection: str, spec: IndexSpec) -> None:
        self.client, self.uri, self.collection, self.spec = client, uri, collection, spec
        self._search_params = {"metric_type": "IP", "params": milvus_params(spec)[2]}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, spec: IndexSpec, dim: int) -> MilvusIndex:
        """A new empty collection ``cxr_<hex>`` with its vector index (inner product)."""
        uri = resolve_uri(uri)
        if is_lite(uri) and spec.type not in LITE_TYPES:
            raise IndexTypeError(f"Milvus Lite supports the index types {', '.join(LITE_TYPES)}, not {spec.type}; "
                                 "GPU index types need a Milvus server with GPUs (--milvus-uri http://host:19530)")
        from pymilvus import DataType, MilvusClient

        client = connect(uri)
        name = f"cxr_{secrets.token_hex(6)}"
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        for field in ("view", "sex", "source", "patient"):
            schema.add_field(field, DataType.VARCHAR, max_length=_STR_MAX)
        schema.add_field("age", DataType.FLOAT)
        schema.add_field("day_offset", DataType.FLOAT)
        schema.add_field("findings", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=64,
                         max_length=_STR_MAX)
        schema.add_field("case", DataType.JSON)
        kind, build, _ = milvus_params(spec)
        index_params = client.prepare_index_params()
        index_params.add_index("vector", index_type=kind, metric_type="IP", params=build)
        try:
            client.create_collection(name, schema=schema, index_params=index_params, consistency_level="Strong")
        except Exception as exc:  # noqa: BLE001 - server-side refusals (unsupported index type, quota)
            raise IndexStateError(f"Milvus at {uri} refused a {kind} collection: {exc}") from exc
        log.info("Milvus collection %s at %s: %s index %s", name, uri, kind, build)
        return cls(client, uri, name, spec)

    @classmethod
    def open(cls, uri: str, collection: str, spec: IndexSpec) -> MilvusIndex:
        client = connect(uri)
        if not client.has_collection(collection):
            raise IndexStateError(f"Milvus at {uri} has no collection {collection}: the index folder and the "
                                  "Milvus data are out of step; rebuild with `cxr index rebuild --index DIR`")
        client.load_collection(collection)
        return cls(client, uri, collection, spec)

    # -- editing -----------------------------------------------------------------------------
    def insert(self, rows: Sequence[CaseRow], vectors: np.ndarray) -> int:
        """Insert cases with their vectors (in batches: a gRPC message has a size limit)."""
        if len(rows) != len(vectors):
            raise ValueError(f"{len(rows)} cases but {len(vectors)} vectors")
        for s in range(0, len(rows), _INSERT_BATCH):
            self.client.insert(self.collection, [_entity(r, v) for r, v in
                                                 zip(rows[s:s + _INSERT_BATCH], vectors[s:s + _INSERT_BATCH])])
        return len(rows)

    def delete(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
        for s in range(0, len(ids), 10_000):
            self.client.delete(self.collection, ids=ids[s:s + 10_000])

    def drop(self) -> None:
        """Drop the collection (after a swap replaced it, or when a build failed)."""
        try:
            self.client.drop_collection(self.collection)
        except Exception as exc:  # noqa: BLE001 - best effort: an orphan collection only costs space
            log.warning("could not drop Milvus collection %s: %s", self.collection, exc)

    @property
    def can_remove(self) -> bool:
        return True  # Milvus deletes in place for every index type

    @property
    def ntotal(self) -> int:
        res = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    # -- search ------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int, expr: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Top-k (similarities, ids) of one query among the cases matching ``expr`` (all when empty)."""
        res = self.client.search(self.collection, data=[np.asarray(vector, np.float32).ravel().tolist()],
                                 limit=int(k), filter=expr, search_params=self._search_params, output_fields=[])
        hits = res[0] if res else []
        sims = np.array([h["distance"] for h in hits], np.float32)
        ids = np.array([h["id"] for h in hits], np.int64)
        return sims, ids

    def search_batch(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered top-k for many queries at once (benchmarks, evaluation); -1 pads short rows."""
        res = self.client.search(self.collection, data=np.asarray(vectors, np.float32).tolist(), limit=int(k),
                                 search_params=self._search_params, output_fields=[])
        sims = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        for j, hits in enumerate(res):
            sims[j, : len(hits)] = [h["distance"] for h in hits]
            ids[j, : len(hits)] = [h["id"] for h in hits]
        return sims, ids

    def describe(self) -> dict[str, Any]:
        """Where the vectors live, for stats (a server URL's credentials are never shown)."""
        shown = self.uri if is_lite(self.uri) else self.uri.split("@")[-1]
        return {"uri": shown, "collection": self.collection, "lite": is_lite(self.uri)}
