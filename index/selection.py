"""Which FAISS index for a corpus: exact while it is fast enough, IVF beyond, PQ when memory is short.

The thresholds and parameters come from ``scripts/bench_index.py`` on a 2-core CPU
(see docs/benchmarks.md): exact search stays under the 5 ms single-query target up to
about FLAT_MAX vectors of 256 floats; above that IVF-Flat with the nlist/nprobe below
keeps recall@10 >= 0.95 at p50 <= 5 ms up to 10^6 vectors. IVF-PQ is chosen only when
the raw vectors do not fit the memory budget (it trades recall for 8x less memory),
HNSW only on request (fast, but it cannot remove vectors without a rebuild).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from embed.errors import CXRError

INDEX_TYPES = ("auto", "flat", "ivf", "ivfpq", "hnsw")

#: Largest corpus searched exactly by the automatic rule (measured, see module doc).
FLAT_MAX = 50_000
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
    """Number of IVF lists: about 4*sqrt(n), a power of two, between 16 and 16384.

    Each list then holds ~sqrt(n)/4 vectors; fewer lists would make each probe scan more.
    """
    if n <= 0:
        return 16
    target = 4.0 * math.sqrt(n)
    return int(min(16384, max(16, 2 ** round(math.log2(target)))))


def ivf_nprobe(nlist: int) -> int:
    """Lists probed per query: measured to keep recall@10 >= 0.95 on clustered data."""
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
    if kind in ("ivf", "ivfpq"):
        nlist = ivf_nlist(n)
        params: dict[str, Any] = {"nlist": nlist, "nprobe": ivf_nprobe(nlist), "train_size": min(n, 64 * nlist)}
        if kind == "ivfpq":
            params.update({"pq_m": pq_m(dim), "pq_bits": 8, "nprobe": min(nlist, params["nprobe"] * 2)})
        return IndexSpec(kind, params)
    if kind == "hnsw":
        return IndexSpec("hnsw", {"M": 32, "efConstruction": 80, "efSearch": 64})
    raise IndexTypeError(f"unknown index type {kind!r}: choose one of {', '.join(INDEX_TYPES)}")


def choose_index(n: int, dim: int, override: str = "auto", budget: int | None = None) -> IndexSpec:
    """The index for ``n`` vectors of ``dim`` floats: ``override`` wins unless it is 'auto'."""
    override = (override or "auto").lower()
    if override not in INDEX_TYPES:
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
