"""Size of an index generation on disk (the folder layout itself is described in index.generations)."""

from __future__ import annotations

from pathlib import Path


def disk_size(folder: str | Path) -> int:
    """Bytes used by the files of an index folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
