"""The pointer ``DIR/CURRENT`` that names an index's live generation (see index.generations).

Kept apart so that ``index.manifest`` can resolve an index folder to its live generation
without importing the writer machinery.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from index.errors import IndexCorruptError, IndexMissingError

CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
LEGACY = "legacy"  # the generation name of a pre-generation folder (files directly in DIR)
GEN_RE = re.compile(r"^gen-(\d{6,})$")


@dataclass(frozen=True)
class Pointer:
    """What ``CURRENT`` says: the live generation and its manifest's sha256 (None for a legacy folder)."""

    generation: str
    manifest_sha256: str | None = None


def read_pointer(index_dir: str | Path) -> Pointer | None:
    """The live generation of ``index_dir``; None when the folder holds no index (yet)."""
    index_dir = Path(index_dir)
    try:
        raw = (index_dir / CURRENT_FILE).read_text()
    except FileNotFoundError:
        return Pointer(LEGACY) if (index_dir / MANIFEST_FILE).is_file() else None
    except NotADirectoryError:
        return None
    try:
        d = json.loads(raw)
        ptr = Pointer(str(d["generation"]), str(d["manifest_sha256"]))
    except (ValueError, KeyError, TypeError):
        raise IndexCorruptError(f"index {index_dir}: {CURRENT_FILE} is damaged; restore the folder from a backup "
                                f"or rebuild it with `cxr index build --out {index_dir} ...`") from None
    if not GEN_RE.match(ptr.generation):
        raise IndexCorruptError(f"index {index_dir}: {CURRENT_FILE} names no generation ({ptr.generation[:40]!r})")
    return ptr


def generation_path(index_dir: Path, ptr: Pointer) -> Path:
    return index_dir if ptr.generation == LEGACY else index_dir / ptr.generation


def live_generation(index_dir: str | Path) -> tuple[Path, Pointer]:
    """Folder and pointer of the live generation; IndexMissingError when there is none."""
    index_dir = Path(index_dir).resolve()
    if not index_dir.is_dir():
        raise IndexMissingError(f"index folder {index_dir} not found: build one with "
                                f"`cxr index build --out {index_dir} KIND:PATH ...`")
    ptr = read_pointer(index_dir)
    if ptr is None:
        raise IndexMissingError(f"{index_dir} holds no index (no {CURRENT_FILE} or {MANIFEST_FILE}): it is not an "
                                f"index folder or its first build did not finish; build it with "
                                f"`cxr index build --out {index_dir} KIND:PATH ...`")
    path = generation_path(index_dir, ptr)
    if not (path / MANIFEST_FILE).is_file():
        raise IndexMissingError(f"index {index_dir}: generation {ptr.generation} named by {CURRENT_FILE} is missing; "
                                "restore the folder from a backup or rebuild it with `cxr index build`")
    return path, ptr


