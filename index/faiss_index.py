"""FAISS index wrapper: cosine similarity as inner product, int64 case ids, filtered search, GPU when present.

Vectors are L2-normalised, so inner product = cosine similarity. Ids are the
store's case ids (IndexIDMap2 around flat and HNSW; IVF stores ids natively).
Flat and IVF can remove ids in place; HNSW cannot, so removed cases are
tombstoned in the store, excluded at search, and ``cxr index rebuild`` compacts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise at INFO

import faiss  # noqa: E402

from embed.errors import IndexStateError
from index.selection import IVF_TYPES, IndexSpec, IndexTypeError

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
GPU_TYPES = ("flat", "ivf", "ivfsq", "ivfpq")  # FAISS has no GPU HNSW


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # pragma: no cover - very old faiss
        return 0


def search_threads() -> int:
    """OpenMP threads for searching: CXR_FAISS_THREADS, else 1.

    Measured on a loaded 2-core machine (docs/benchmarks.md): a single query is far too small
    to share between threads, and OpenMP's barriers made 2-thread single-query latency 10-100x
    worse whenever the cores were busy. Concurrency comes from serving requests in threads.
    """
    raw = os.environ.get("CXR_FAISS_THREADS", "")
    return max(1, int(raw)) if raw.strip().isdigit() else 1


def set_search_threads() -> int:
    n = search_threads()
    faiss.omp_set_num_threads(n)
    return n


def normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation into a fresh C-contiguous float32 array."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).copy()
    if x.ndim == 1:
        x = x[None]
    faiss.normalize_L2(x)
    return x


def _ids(ids: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())


class _Selector:
    """An IDSelector plus the arrays it points into (FAISS keeps raw pointers: they must stay alive)."""

    def __init__(self, allowed: np.ndarray | None, excluded: np.ndarray | None,
                 allowed_mask: np.ndarray | None = None) -> None:
        self.sel: Any = None
        self._keep: list[Any] = []
        if allowed_mask is not None:  # bool per id: a bitmap, O(1) membership and cheap to build
            bits = np.packbits(np.asarray(allowed_mask, dtype=bool), bitorder="little")
            self._keep.append(bits)
            self.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        elif allowed is not None:
            a = _ids(allowed)
            self._keep.append(a)
            self.sel = faiss.IDSelectorBatch(len(a), faiss.swig_ptr(a))
        elif excluded is not None and len(excluded):
            e = _ids(excluded)
            inner = faiss.IDSelectorBatch(len(e), faiss.swig_ptr(e))
            self._keep += [e, inner]
            self.sel = faiss.IDSelectorNot(inner)


class VectorIndex:
    """One FAISS index of unit vectors keyed by int64 case ids."""

    kind = "faiss"

    def __init__(self, index: Any, spec: IndexSpec, *, read_only: bool = False, use_gpu: bool | None = None) -> None:
        self.index = index
        self.spec = spec
        self.read_only = read_only
        self._gpu_index: Any = None
        want_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        if want_gpu and spec.type in GPU_TYPES and gpu_count() > 0:
            try:
                res = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
                self._gpu_res = res
                log.info("FAISS %s index: searching on GPU 0 (unfiltered queries; filtered ones on the CPU)", spec.type)
            except Exception as exc:  # noqa: BLE001 - any GPU failure falls back to the CPU
                log.warning("FAISS GPU copy failed (%s): searching on the CPU", exc)
        else:
            log.info("FAISS %s index: searching on the CPU (%d threads)", spec.type, faiss.omp_get_max_threads())

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: IndexSpec, dim: int) -> VectorIndex:
        """An empty (untrained) index of the given type."""
        p = spec.params
        if spec.type == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif spec.type == "ivf":
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, int(p["nlist"]), faiss.METRIC_INNER_PRODUCT)
            index.nprobe = int(p["nprobe"])
        elif spec.type == "ivfsq":
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, int(p["nlist"]), faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            index.nprobe = int(p["nprobe"])
        elif spec.type == "ivfpq":
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(
                quantizer, dim, int(p["nlist"]), int(p["pq_m"]), int(p.get("pq_bits", 8)), faiss.METRIC_INNER_PRODUCT
            )
            index.nprobe = int(p["nprobe"])
        elif spec.type == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, int(p["M"]), faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = int(p["efConstruction"])
            inner.hnsw.efSearch = int(p["efSearch"])
            index = faiss.IndexIDMap2(inner)
        else:
            raise IndexTypeError(f"unknown index type {spec.type!r}")
        return cls(index, spec, use_gpu=False)

    @classmethod
    def build(cls, spec: IndexSpec, vectors: np.ndarray, ids: np.ndarray, dim: int) -> VectorIndex:
        """Create, train where needed (on a sample, on the GPU when present) and fill."""
        vi = cls.create(spec, dim)
        vi.train(vectors)
        vi.add(vectors, ids)
        return vi

    @property
    def _ivf(self) -> Any:
        return faiss.extract_index_ivf(self.index) if self.spec.type in IVF_TYPES else None

    def train(self, vectors: np.ndarray) -> None:
        """Train IVF quantizers on a random sample (no-op for flat and HNSW)."""
        if self.index.is_trained:
            return
        x = normalize(vectors)
        nlist = int(self.spec.params["nlist"])
        if len(x) < nlist:
            raise IndexTypeError(
                f"an IVF index with {nlist} lists needs at least {nlist} vectors to train, got {len(x)}; "
                "use --index-type flat for a corpus this small"
            )
        sample = int(self.spec.params.get("train_size") or len(x))
        if sample < len(x):
            rng = np.random.default_rng(0)
            x = x[np.sort(rng.choice(len(x), sample, replace=False))]
        ivf = self._ivf
        if gpu_count() > 0:
            try:  # train the coarse quantizer's k-means on the GPU
                ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(ivf.d))
                log.info("training IVF on the GPU")
            except Exception as exc:  # noqa: BLE001
                log.warning("GPU training unavailable (%s): training on the CPU", exc)
        self.index.train(x)
        self.spec.params["trained_on"] = int(len(x))

    # -- editing -----------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if self.read_only:
            raise IndexStateError("this index was opened read-only (memory-mapped); open it for writing to add")
        x, i = normalize(vectors), _ids(ids)
        if len(x) != len(i):
            raise ValueError(f"{len(x)} vectors but {len(i)} ids")
        if len(x):
            self.index.add_with_ids(x, i)
        self._gpu_index = None  # a GPU copy is stale after edits

    @property
    def can_remove(self) -> bool:
        """Whether ids can be removed in place (flat, IVF) rather than tombstoned (HNSW)."""
        return self.spec.type in ("flat", *IVF_TYPES)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids in place; returns the number removed."""
        if not self.can_remove:
            raise IndexTypeError(f"a {self.spec.type} index cannot remove vectors; tombstone them and rebuild")
        n = int(self.index.remove_ids(faiss.IDSelectorBatch(len(_ids(ids)), faiss.swig_ptr(_ids(ids)))))
        self._gpu_index = None
        return n

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    # -- search ------------------------------------------------------------------------------
    def _params(self, sel: Any) -> Any:
        p = self.spec.params
        if self.spec.type in IVF_TYPES:
            return faiss.SearchParametersIVF(sel=sel, nprobe=int(p["nprobe"]))
        if self.spec.type == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=max(int(p["efSearch"]), 1))
        return faiss.SearchParameters(sel=sel)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        excluded: np.ndarray | None = None,
        allowed_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (similarities, ids) per query, restricted to ``allowed`` ids (or ``allowed_mask``, a bool
        per id) or leaving out ``excluded``.

        Missing results (fewer than k eligible) have id -1. Restricted searches run on the CPU
        (FAISS GPU indices do not take ID selectors); unrestricted ones on the GPU when present.
        """
        q = normalize(queries)
        k = int(max(1, k))
        if (self._gpu_index is not None and allowed is None and allowed_mask is None and excluded is not None
                and 0 < len(excluded) <= 1024 and k + len(excluded) <= 2048):
            return self._gpu_widened(q, k, _ids(excluded))
        sel = _Selector(allowed, excluded, allowed_mask)
        if sel.sel is None:
            if self._gpu_index is not None:
                return _raw_search(self._gpu_index, q, min(k, 2048))
            if self.spec.type in (*IVF_TYPES, "hnsw"):
                return _raw_search(self.index, q, k, self._params(None))
            return _raw_search(self.index, q, k)
        return _raw_search(self.index, q, k, self._params(sel.sel))

    def _gpu_widened(self, q: np.ndarray, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GPU search without selectors: ask for k + |excluded| and drop the excluded ids (k-widening)."""
        sims, ids = _raw_search(self._gpu_index, q, k + len(excluded))
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        for j in range(len(q)):
            keep = ~np.isin(ids[j], excluded) & (ids[j] >= 0)
            s, i = sims[j][keep][:k], ids[j][keep][:k]
            out_s[j, : len(s)], out_i[j, : len(i)] = s, i
        return out_s, out_i

    # -- persistence -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write to a temporary file, then rename (a crash never leaves half an index)."""
        path = Path(folder) / INDEX_FILE
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | Path, spec: IndexSpec, *, mmap: bool | None = None, use_gpu: bool | None = None) -> VectorIndex:
        """Read the index; IVF indices are memory-mapped read-only by default (need not fit in RAM)."""
        path = Path(folder) / INDEX_FILE
        if not path.is_file():
            raise IndexStateError(f"{path} is missing: the index folder is incomplete; rebuild it with `cxr index build`")
        if mmap is None:
            mmap = spec.type in IVF_TYPES
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise IndexStateError(f"{path} could not be read ({exc}); rebuild it with `cxr index build`") from exc
        if spec.type in IVF_TYPES:
            faiss.extract_index_ivf(index).nprobe = int(spec.params["nprobe"])
        elif spec.type == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = int(spec.params["efSearch"])
        return cls(index, spec, read_only=bool(mmap), use_gpu=use_gpu)


def _raw_search(index: Any, q: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` on numpy arrays, with search parameters.

    ``faiss.contrib.torch_utils`` (imported by pytorch-metric-learning) replaces
    ``Index.search`` with a torch-aware wrapper that takes no ``params``; it keeps
    the original as ``search_numpy``, which we call when present.
    """
    search = getattr(index, "search_numpy", index.search)
    if params is None:
        return search(q, k)
    return search(q, k, params=params)
