"""Which FAISS index for a corpus: exact while it is fast enough, IVF beyond, compressed when memory is short.

The structure follows FAISS's own guidance (wiki "Guidelines to choose an index"): exact
search up to FLAT_MAX vectors of 256 floats (measured with ``scripts/bench_index.py``: past
the CPU caches the scan is memory-bound); above that IVF with nlist between 4*sqrt(N) and
16*sqrt(N), its k-means trained on a sample of 30-256 points per centroid. When the raw
vectors do not fit the memory budget (CXR_INDEX_MEMORY_GB) IVF-SQ8 (a byte per dimension,
a quarter of Flat) and, below that, IVF-PQ (8 dimensions per byte); both re-score their
candidates exactly from the memory-mapped vectors.npy (on disk, not RAM).
HNSW only on request (fast, but it cannot remove vectors without a rebuild).

The search-time knobs set here (nprobe, efSearch, re-rank depth) are only starting points:
``index.tuning`` measures recall on the index's own vectors and replaces them (docs/index.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from embed.errors import CXRError

INDEX_TYPES = ("auto", "flat", "ivf", "ivfsq", "ivfpq", "hnsw")
#: Index types only the Milvus backend has (on a Milvus server with GPU query nodes).
MILVUS_ONLY_TYPES = ("gpu_cagra", "gpu_ivf_pq")
#: IVF variants (coarse quantizer + inverted lists; nprobe is their search knob).
IVF_TYPES = ("ivf", "ivfsq", "ivfpq")
#: Compressed IVF variants whose candidates are re-scored exactly (their rerank knob).
RERANK_TYPES = ("ivfsq", "ivfpq", "gpu_ivf_pq")
#: FAISS k-means warns below 39 and samples down above 256 training points per centroid.
TRAIN_MIN_PER_LIST, TRAIN_PER_LIST, TRAIN_MAX_PER_LIST = 30, 64, 256

#: Largest corpus searched exactly by the automatic rule (measured, see module doc).
FLAT_MAX = 20_000
#: Default memory budget for the vectors held by the index (override with CXR_INDEX_MEMORY_GB).
DEFAULT_MEMORY_BUDGET = 8 * 1024**3


class IndexTypeError(CXRError):
    """An unknown or impossible index type was asked for."""

    code = "index_type"


@dataclass
class IndexSpec:
    """An index type and its parameters (recorded in the manifest)."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def memory_budget() -> int:
    """Bytes the index may use, from CXR_INDEX_MEMORY_GB or the default."""
    raw = os.environ.get("CXR_INDEX_MEMORY_GB")
    if raw:
        try:
            return int(float(raw) * 1024**3)
        except ValueError as exc:
            raise IndexTypeError(f"CXR_INDEX_MEMORY_GB must be a number of GiB, not {raw!r}") from exc
    return DEFAULT_MEMORY_BUDGET


def ivf_nlist(n: int) -> int:
    """Number of IVF lists: the power of two in FAISS's 4*sqrt(N)..16*sqrt(N) range nearest 4*sqrt(N).

    The low end keeps k-means training (cost ~ nlist * training points) inside two minutes at
    10^6 vectors on a 2-core CPU; more lists make each probe cheaper (fewer vectors per list)
    and tuning then finds the nprobe that reaches the recall target. Capped so that every list
    gets at least TRAIN_MIN_PER_LIST training points.
    """
    if n <= 0:
        return 16
    nlist = 2 ** math.ceil(math.log2(4 * math.sqrt(n)))
    while nlist > 16 and nlist * TRAIN_MIN_PER_LIST > n:
        nlist //= 2
    return int(min(65536, max(16, nlist)))


def ivf_train_size(n: int, nlist: int) -> int:
    """Training sample: TRAIN_PER_LIST points per centroid (within FAISS's 30-256), at most n."""
    return int(min(n, max(TRAIN_MIN_PER_LIST * nlist, min(TRAIN_PER_LIST * nlist, TRAIN_MAX_PER_LIST * nlist))))


def ivf_nprobe(nlist: int) -> int:
    """Lists probed per query: 1/32 of them, at least 8 (recall margin over the measured minimum)."""
    return int(min(nlist, max(8, nlist // 32)))


def pq_m(dim: int) -> int:
    """PQ sub-quantizers: 8 dimensions each (32 bytes for 256-d), a divisor of dim."""
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


def spec_for(kind: str, n: int, dim: int) -> IndexSpec:
    """Parameters for an explicitly named index type and corpus size."""
    if kind == "flat":
        return IndexSpec("flat", {})
    if kind in (*IVF_TYPES, "gpu_ivf_pq"):
        nlist = ivf_nlist(n)
        params: dict[str, Any] = {"nlist": nlist, "nprobe": ivf_nprobe(nlist), "train_size": ivf_train_size(n, nlist)}
        if kind == "ivfsq":
            params.update({"sq": "8bit", "rerank": 10})
        if kind in ("ivfpq", "gpu_ivf_pq"):
            # PQ training (one k-means per sub-quantizer) is slow on a CPU: 40 points per list suffice.
            params.update({"pq_m": pq_m(dim), "pq_bits": 8, "nprobe": min(nlist, params["nprobe"] * 2),
                           "train_size": min(n, max(40 * nlist, 10_000)), "rerank": 20})
        return IndexSpec(kind, params)
    if kind == "hnsw":
        return IndexSpec("hnsw", {"M": 32, "efConstruction": 80, "efSearch": 64})
    if kind == "gpu_cagra":  # CAGRA graph on the GPU (Milvus GPU_CAGRA); degrees as Milvus recommends
        return IndexSpec("gpu_cagra", {"intermediate_graph_degree": 64, "graph_degree": 32, "itopk_size": 128})
    raise IndexTypeError(f"unknown index type {kind!r}: choose one of {', '.join(INDEX_TYPES + MILVUS_ONLY_TYPES)}")


def choose_index(n: int, dim: int, override: str = "auto", budget: int | None = None) -> IndexSpec:
    """The index for ``n`` vectors of ``dim`` floats: ``override`` wins unless it is 'auto'."""
    override = (override or "auto").lower()
    if override not in INDEX_TYPES + MILVUS_ONLY_TYPES:
        raise IndexTypeError(f"unknown index type {override!r}: choose one of {', '.join(INDEX_TYPES)}")
    if override != "auto":
        spec = spec_for(override, n, dim)
        spec.reason = "requested"
        return spec
    budget = memory_budget() if budget is None else budget
    raw_bytes = n * dim * 4
    if n <= FLAT_MAX:
        spec = spec_for("flat", n, dim)
        spec.reason = f"{n} <= {FLAT_MAX} vectors: exact search is fast enough"
    elif raw_bytes * 1.2 <= budget:
        spec = spec_for("ivf", n, dim)
        spec.reason = f"{n} > {FLAT_MAX} vectors and {raw_bytes / 1024**3:.2f} GiB fit the memory budget"
    elif raw_bytes / 4 * 1.2 <= budget:
        spec = spec_for("ivfsq", n, dim)
        spec.reason = (f"{raw_bytes / 1024**3:.2f} GiB of raw vectors exceed the {budget / 1024**3:.1f} GiB budget; "
                       "8-bit codes (a quarter) fit")
    else:
        spec = spec_for("ivfpq", n, dim)
        spec.reason = (f"{raw_bytes / 1024**3:.2f} GiB of raw vectors, even at 8 bits per dimension, exceed the "
                       f"{budget / 1024**3:.1f} GiB budget")
    return spec


#: Candidates per wanted neighbour re-scored exactly when an untuned compressed index does not say.
RERANK_FACTOR = 20


def rerank_depth(spec: IndexSpec, k: int) -> int:
    """How many candidates to ask the FAISS index for: k, or for IVF-SQ/PQ k * rerank, re-scored exactly.

    A tuned index asks for what tuning found enough for recall@k_tuned (usually 10), and never
    fewer for a smaller k (recall at a smaller k was not measured); an untuned one keeps the
    historical floor of 200 candidates (the safe default measured in docs/benchmarks.md).
    """
    if spec.type not in RERANK_TYPES:
        return k
    tuning = spec.params.get("tuning")
    tuned_k = int(tuning.get("k", 10)) if isinstance(tuning, dict) else 10
    depth = max(k, tuned_k) * int(spec.params.get("rerank", RERANK_FACTOR))
    if tuning is None:
        depth = max(depth, 200)
    return int(min(max(depth, k), 2048))
