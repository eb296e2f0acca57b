"""The standardized-image cache: content-addressed uint8 ``.npy`` files.

Decoding and standardizing a radiograph costs far more than a forward pass of a small
CNN on a CPU, so each standardized image is stored once as uint8 ``.npy`` under
``<cache_dir>/std/<StandardizeConfig.fingerprint()>/<sha[:2]>/<sha256 of file>.npy``.
Keys are content hashes, so renamed or copied files hit the cache and edited files
miss it; a different standardization gets its own folder. Every job reads images
through this module, by way of the reader of :mod:`embed.pipeline`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
import numpy as np

from embed.standardize import StandardizeConfig, load_standardized

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """sha256 of the file content (the cache key, independent of the file name)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(std_cfg: StandardizeConfig) -> str:
    return std_cfg.fingerprint()


def cache_root(std_cfg: StandardizeConfig) -> Path:
    """Folder that holds every cached image for one standardization."""
    from embed.settings import get_settings

    return get_settings().resolved_cache_dir() / "std" / _fingerprint(std_cfg)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(arr, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def load_standardized_u8(path: str | Path, std_cfg: StandardizeConfig, *, use_cache: bool = True) -> np.ndarray:
    """Standardized image as uint8 [S,S], read from the cache or computed and stored.

    Raises the reader's ``ImageReadError`` subclasses for unreadable files.
    """
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
