"""Which FAISS index for a corpus: exact while it is fast enough, IVF beyond, PQ when memory is short.

The thresholds and parameters come from ``scripts/bench_index.py`` on a 2-core CPU
(see docs/benchmarks.md): exact search stays under the 5 ms single-query target up to
about FLAT_MAX vectors of 256 floats (50 000 already took 6 ms: past the CPU caches the
scan is memory-bound); above that IVF-Flat with the nlist/nprobe below keeps recall@10
>= 0.99 at p50 <= 2 ms up to 10^6 vectors. IVF-PQ is chosen only when the raw vectors do
not fit the memory budget: its 32-byte codes alone reach recall@10 ~0.5, so the engine
re-scores 20k candidates exactly from the memory-mapped vectors.npy (on disk, not RAM).
HNSW only on request (fast, but it cannot remove vectors without a rebuild).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from embed.errors import CXRError

INDEX_TYPES = ("auto", "flat", "ivf", "ivfpq", "hnsw")
#: Index types only the Milvus backend has (on a Milvus server with GPU query nodes).
MILVUS_ONLY_TYPES = ("gpu_cagra", "gpu_ivf_pq")

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
    """Number of IVF lists: about sqrt(n), a power of two, between 16 and 16384.

    Measured (bench_index, 2-core CPU): at 10^5 vectors 256 lists with nprobe 8 and 1024 lists
    with nprobe 8 both reach recall@10 >= 0.999; more lists mainly make training slower
    (k-means cost grows with nlist), so the square root keeps 10^6-vector builds to minutes.
    """
    if n <= 0:
        return 16
    return int(min(16384, max(16, 2 ** round(math.log2(math.sqrt(n))))))


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
    if kind in ("ivf", "ivfpq", "gpu_ivf_pq"):
        nlist = ivf_nlist(n)
        params: dict[str, Any] = {"nlist": nlist, "nprobe": ivf_nprobe(nlist), "train_size": min(n, 64 * nlist)}
        if kind in ("ivfpq", "gpu_ivf_pq"):
            # PQ training (one k-means per sub-quantizer) is slow on a CPU: 40 points per list suffice.
            params.update({"pq_m": pq_m(dim), "pq_bits": 8, "nprobe": min(nlist, params["nprobe"] * 2),
                           "train_size": min(n, max(40 * nlist, 10_000))})
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
    else:
        spec = spec_for("ivfpq", n, dim)
        spec.reason = f"{raw_bytes / 1024**3:.2f} GiB of raw vectors exceed the {budget / 1024**3:.1f} GiB budget"
    return spec
