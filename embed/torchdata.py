"""Standardized images for torch: a content-addressed disk cache and CaseImageDataset.

Decoding and standardizing a radiograph costs far more than a forward pass of a small
CNN on a CPU, so each standardized image is stored once as uint8 ``.npy`` under
``<cache_dir>/std/<StandardizeConfig.fingerprint()>/<sha[:2]>/<sha256 of file>.npy``.
Keys are content hashes, so renamed or copied files hit the cache and edited files
miss it; a different standardization gets its own folder. Training, the index builder
and evaluation all read images through this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from embed.errors import CXRError

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """sha256 of the file content (the cache key, independent of the file name)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(std_cfg: Any) -> str:
    return std_cfg.fingerprint()


def cache_root(std_cfg: Any) -> Path:
    """Folder that holds every cached image for one standardization."""
    from embed.settings import get_settings

    return get_settings().resolved_cache_dir() / "std" / _fingerprint(std_cfg)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(arr, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def load_standardized_u8(path: str | Path, std_cfg: Any, *, use_cache: bool = True) -> np.ndarray:
    """Standardized image as uint8 [S,S], read from the cache or computed and stored.

    Raises the reader's ``ImageReadError`` subclasses for unreadable files.
    """
    from embed.standardize import load_standardized

    if not use_cache:
        return to_uint8(load_standardized(str(path), std_cfg))
    sha = file_sha256(path)
    target = cache_root(std_cfg) / sha[:2] / f"{sha}.npy"
    if target.is_file():
        try:
            arr = np.load(target, allow_pickle=False)
            if arr.dtype == np.uint8 and arr.ndim == 2:
                return arr
        except (OSError, ValueError):
            log.warning("cache entry %s is damaged; recomputing", target.name)
    arr = to_uint8(load_standardized(str(path), std_cfg))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr, allow_pickle=False)
    os.replace(tmp, target)
    return arr


class CaseImageDataset(Dataset):
    """Records -> (standardized tensor [1,S,S] float in [0,1], index into ``records``).

    Every image is read once at construction (through the cache) so that unreadable
    ones are dropped up front, counted and logged, instead of failing mid-epoch.
    ``kept`` lists the indices (into the ``records`` given) that remain; ``skipped``
    holds (case_id, reason) of those dropped. ``in_memory`` keeps the uint8 arrays in
    RAM (S=160: 25 KB each), which makes training epochs cost only forward/backward.
    ``transform`` gets and returns a float tensor [1,S,S].
    """

    def __init__(
        self,
        records: Sequence[Any],
        std_cfg: Any,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        use_cache: bool = True,
        in_memory: bool = False,
        progress: bool = False,
    ) -> None:
        self.records = list(records)
        self.std_cfg = std_cfg
        self.transform = transform
        self.use_cache = use_cache
        self.kept: list[int] = []
        self.skipped: list[tuple[str, str]] = []
        self._arrays: list[np.ndarray] | None = [] if in_memory else None
        iterator: Any = range(len(self.records))
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="standardize", unit="img")
        for i in iterator:
            rec = self.records[i]
            try:
                arr = load_standardized_u8(rec.image_path, std_cfg, use_cache=use_cache)
            except (CXRError, OSError) as exc:
                self.skipped.append((rec.case_id, type(exc).__name__))
                continue
            self.kept.append(i)
            if self._arrays is not None:
                self._arrays.append(arr)
        if self.skipped:
            counts = Counter(reason for _, reason in self.skipped)
            log.warning("skipped %d unreadable images of %d (%s)", len(self.skipped), len(self.records), dict(counts))

    def __len__(self) -> int:
        return len(self.kept)

    def array(self, pos: int) -> np.ndarray:
        """uint8 [S,S] image at dataset position ``pos``."""
        if self._arrays is not None:
            return self._arrays[pos]
        rec = self.records[self.kept[pos]]
        return load_standardized_u8(rec.image_path, self.std_cfg, use_cache=self.use_cache)

    def __getitem__(self, pos: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.array(pos).astype(np.float32) / 255.0)[None]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.kept[pos]
