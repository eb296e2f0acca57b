"""The raw embeddings beside the index (``vectors.npy`` + ``ids.npy``, memory-mapped).

Kept so that an index can be rebuilt (compacted, or of another type) without
re-embedding any image, so an indexed case can be a query, and so a small
filtered subset (one patient, a rare finding) is searched exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embed.errors import IndexStateError

VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.npy"


def save_vectors(folder: str | Path, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Write both arrays sorted by id, each via a temporary file and a rename."""
    folder = Path(folder)
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    for name, arr in ((IDS_FILE, ids[order]), (VECTORS_FILE, np.asarray(vectors, dtype=np.float32)[order])):
        tmp = folder / f"{name}.tmp{os.getpid()}.npy"
        np.save(tmp, np.ascontiguousarray(arr), allow_pickle=False)
        os.replace(tmp, folder / name)


class VectorTable:
    """id -> vector lookup over the memory-mapped arrays (read-only)."""

    def __init__(self, folder: str | Path, *, mmap: bool = True) -> None:
        folder = Path(folder)
        try:
            self.ids = np.load(folder / IDS_FILE, allow_pickle=False)
            self.vectors = np.load(folder / VECTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"{folder} lacks readable {IDS_FILE}/{VECTORS_FILE} ({exc}); rebuild with `cxr index build`") from exc
        if len(self.ids) != len(self.vectors):
            raise IndexStateError(f"{folder}: {len(self.ids)} ids but {len(self.vectors)} vectors; rebuild the index")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Positions of ``ids`` (each must be present)."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos = np.clip(pos, 0, max(len(self.ids) - 1, 0))
        if len(ids) and (len(self.ids) == 0 or not np.all(self.ids[pos] == ids)):
            raise KeyError("some ids have no stored vector")
        return pos

    def get(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors[self.rows(ids)], dtype=np.float32)

    def has(self, case_id: int) -> bool:
        pos = int(np.searchsorted(self.ids, case_id))
        return pos < len(self.ids) and int(self.ids[pos]) == int(case_id)

    def exact_search(self, query: np.ndarray, k: int, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-k over ``candidates`` (1 query): exact, used for small filtered subsets."""
        candidates = np.asarray(candidates, dtype=np.int64)
        if len(candidates) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        sims = self.get(candidates) @ np.asarray(query, dtype=np.float32).ravel()
        k = min(k, len(candidates))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.lexsort((candidates[top], -sims[top]))]  # similarity desc, then id asc: deterministic
        return sims[top].astype(np.float32), candidates[top]


def rerank(query: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact re-scoring of candidate ``ids`` (with their ``vectors``) and the top k: used after IVF-PQ,
    whose compressed codes rank neighbours only roughly (recall@10 ~0.5 alone, see docs/benchmarks.md)."""
    keep = ids >= 0
    ids, vectors = ids[keep], vectors[keep]
    sims = vectors @ np.asarray(query, dtype=np.float32).ravel()
    order = np.lexsort((ids, -sims))[:k]
    return sims[order].astype(np.float32), ids[order]
