"""Content hashes of dataset images: the index builder's deduplication step.

Embedding itself runs through :mod:`embed.pipeline`, the one pipeline that ``cxr embed``,
``cxr evaluate`` and training validation also run.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from embed.torchdata import file_sha256


def hash_files(paths: Sequence[str], workers: int = 4) -> list[str | None]:
    """sha256 of each file's content (None where the file cannot be read); threads overlap the I/O."""

    def one(p: str) -> str | None:
        try:
            return file_sha256(p)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, paths))
