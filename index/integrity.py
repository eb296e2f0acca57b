"""Checksums of every index file, recorded in the manifest when a generation is sealed and checked at load.

Bytes flipped in ``index.faiss`` used to load silently and change the hits; flipped in
``store.sqlite`` they surfaced as 500s later. A generation's manifest now lists every
other file with its size and sha256, the pointer (``CURRENT``) records the manifest's own
sha256, and :func:`check_generation` compares all of them plus SQLite's ``PRAGMA
quick_check`` before anything is served. ``cxr index verify`` runs the same check and
reports every problem instead of the first.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.errors import IndexCorruptError
from index.manifest import MANIFEST_FILE

STORE_FILE = "store.sqlite"


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make renames and new entries in ``path`` durable (a crash after this keeps them)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _self_contained_store(folder: Path) -> None:
    """Switch the store out of WAL so a sealed generation is one file that never changes again."""
    path = folder / STORE_FILE
    if path.is_file():
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()


def seal(folder: str | Path, generation: str) -> str:
    """Record size and sha256 of every file in the manifest, fsync everything; return the manifest's sha256.

    The manifest stays a plain JSON object: ``files`` and ``generation`` are added to it.
    """
    folder = Path(folder)
    _self_contained_store(folder)
    path = folder / MANIFEST_FILE
    manifest: dict[str, Any] = json.loads(path.read_text())
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != MANIFEST_FILE:
            files[p.name] = {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
            fsync_file(p)
    manifest["files"] = files
    manifest["generation"] = generation
    tmp = path.with_name(path.name + ".seal")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(manifest, indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(folder)
    return file_sha256(path)


@dataclass
class VerifyReport:
    """What ``cxr index verify`` found: one status per file, SQLite's check, and the problems."""

    generation: str
    files: dict[str, str] = field(default_factory=dict)
    sqlite: str = "not checked"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "generation": self.generation, "files": self.files, "sqlite_quick_check": self.sqlite,
                "problems": self.problems, "notes": self.notes}


def verify_generation(folder: str | Path, *, manifest_sha256: str | None = None, generation: str = "",
                      full: bool = True) -> VerifyReport:
    """Check one generation folder against its manifest (and the manifest against the pointer)."""
    folder = Path(folder)
    rep = VerifyReport(generation=generation or folder.name)
    mpath = folder / MANIFEST_FILE
    if not mpath.is_file():
        rep.files[MANIFEST_FILE] = "missing"
        rep.problems.append(f"{MANIFEST_FILE} is missing")
        return rep
    if manifest_sha256 and file_sha256(mpath) != manifest_sha256:
        rep.files[MANIFEST_FILE] = "checksum mismatch"
        rep.problems.append(f"{MANIFEST_FILE} does not match the checksum recorded in CURRENT")
        return rep
    try:
        manifest = json.loads(mpath.read_text())
        recorded = manifest.get("files")
    except (ValueError, AttributeError):
        rep.files[MANIFEST_FILE] = "unreadable"
        rep.problems.append(f"{MANIFEST_FILE} is not valid JSON")
        return rep
    rep.files[MANIFEST_FILE] = "ok"
    if not isinstance(recorded, dict):
        rep.notes.append("built before checksums were recorded: files not verified (any write adds them)")
        recorded = {}
    for name, info in sorted(recorded.items()):
        p = folder / name
        if not p.is_file():
            status = "missing"
        elif p.stat().st_size != int(info.get("bytes", -1)):
            status = "size mismatch"
        elif full and file_sha256(p) != info.get("sha256"):
            status = "checksum mismatch"
        else:
            status = "ok"
        rep.files[name] = status
        if status != "ok":
            rep.problems.append(f"{name}: {status}")
    if (folder / STORE_FILE).is_file():
        rep.sqlite = sqlite_quick_check(folder / STORE_FILE)
        if rep.sqlite != "ok":
            rep.problems.append(f"{STORE_FILE}: SQLite quick_check failed ({rep.sqlite})")
    else:
        rep.problems.append(f"{STORE_FILE} is missing")
    return rep


def sqlite_quick_check(path: Path) -> str:
    """``ok`` or SQLite's first complaint (a damaged header raises instead of answering)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)[:120]
    first = str(rows[0][0]) if rows else "no answer"
    return "ok" if first == "ok" and len(rows) == 1 else first[:120]


def check_generation(index_dir: Path, folder: Path, *, manifest_sha256: str | None, generation: str) -> None:
    """Raise IndexCorruptError naming the damaged files; called before a generation is served or changed."""
    rep = verify_generation(folder, manifest_sha256=manifest_sha256, generation=generation)
    if not rep.ok:
        raise IndexCorruptError(
            f"index {index_dir} (generation {rep.generation}) is damaged: {'; '.join(rep.problems[:4])}. "
            f"Restore the folder from a backup or rebuild it with `cxr index build --out {index_dir} ...`; "
            f"`cxr index verify --index {index_dir}` lists every check"
        )
