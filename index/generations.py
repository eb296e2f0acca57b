"""Immutable index generations behind one atomic pointer (the Lucene/SQLite pattern).

An index folder ``DIR`` holds complete, never-modified generation folders and a
pointer naming the live one::

    DIR/CURRENT          {"generation": "gen-000007", "manifest_sha256": "..."}
    DIR/gen-000007/      manifest.json store.sqlite index.faiss vectors.npy ids.npy
    DIR/.write.lock      the writer lock (index.lock)

A change (build, add, remove, rebuild) takes the writer lock, writes a new generation
in ``DIR/gen-N.tmp-<pid>-<rand>``, seals it (checksums into its manifest, everything
fsync'd), renames it to ``gen-N`` and then replaces ``CURRENT`` with ``os.replace``
(fsync'd): that replace is the commit. A kill at any step leaves ``CURRENT`` naming the
old generation or the new one, both complete; leftovers are removed by the next writer.

Readers *pin* a generation: they hold a shared ``flock`` on its manifest while they use
it, and a writer removes an old generation only when it can take that lock exclusively.
So a server keeps answering from the generation it loaded until it switches, and never
from a folder deleted under it.

A folder written before generations existed (manifest.json directly in ``DIR``) is read
as it is; the first change turns it into ``gen-000001`` and removes the old files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from embed.errors import IndexStateError
from index.errors import IndexCorruptError, IndexMissingError
from index.integrity import check_generation, fsync_dir, seal
from index.lock import LOCK_FILE, OWNER_FILE, writer_lock
from index.manifest import MANIFEST_FILE
from index.pointer import CURRENT_FILE, GEN_RE, LEGACY, Pointer, generation_path, live_generation, read_pointer

__all__ = ["CURRENT_FILE", "LEGACY", "Pointer", "generation_path", "live_generation", "read_pointer", "pin",
           "writing", "verify_index", "crash_point", "PinnedGeneration"]

log = logging.getLogger(__name__)

_GEN_RE = GEN_RE
_LEGACY_FILES = ("manifest.json", "store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "index.faiss",
                 "vectors.npy", "ids.npy")
#: Fault injection for the crash tests: ``CXR_INDEX_CRASH_AT=N`` kills the process (os._exit) at
#: the N-th crash point of a change, so a test can stop a writer between every two steps.
CRASH_ENV = "CXR_INDEX_CRASH_AT"
_crash_counter = 0


def crash_point(step: str) -> None:
    """A step boundary of a change; with ``CXR_INDEX_CRASH_AT=N`` the N-th one kills the process."""
    global _crash_counter
    raw = os.environ.get(CRASH_ENV, "")
    if not raw:
        return
    _crash_counter += 1
    if _crash_counter == int(raw):
        sys.stderr.write(f"crash injected at point {_crash_counter}: {step}\n")
        sys.stderr.flush()
        os._exit(137)


class PinnedGeneration:
    """A generation held open by a reader: writers will not delete it until :meth:`close`."""

    def __init__(self, index_dir: Path, path: Path, pointer: Pointer, fh: IO[bytes]) -> None:
        self.index_dir, self.path, self.pointer, self._fh = index_dir, path, pointer, fh

    @property
    def name(self) -> str:
        return self.pointer.generation

    def verify(self) -> None:
        """Checksums and SQLite quick_check; IndexCorruptError on any mismatch."""
        check_generation(self.index_dir, self.path, manifest_sha256=self.pointer.manifest_sha256,
                         generation=self.name)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()  # releases the shared lock
            self._fh = None


def pin(index_dir: str | Path, attempts: int = 20) -> PinnedGeneration:
    """Pin the live generation (shared flock on its manifest), retrying if a writer just replaced it."""
    index_dir = Path(index_dir).resolve()
    for attempt in range(attempts):
        before = read_pointer(index_dir) if index_dir.is_dir() else None
        try:
            path, ptr = live_generation(index_dir)
        except IndexMissingError:
            # A writer may have switched CURRENT and removed the generation we had just read: read again.
            if attempt + 1 < attempts and index_dir.is_dir() and read_pointer(index_dir) != before:
                continue
            raise
        mpath = path / MANIFEST_FILE
        try:
            fh = open(mpath, "rb")
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            if os.fstat(fh.fileno()).st_ino == os.stat(mpath).st_ino:
                return PinnedGeneration(index_dir, path, ptr, fh)
        except (BlockingIOError, FileNotFoundError):  # being deleted right now: read the pointer again
            pass
        fh.close()
        time.sleep(0.05)
    raise IndexStateError(f"index {index_dir} changed too often to be read; try again")


def _unused(folder: Path) -> IO[bytes] | None:
    """An exclusive lock on a generation nobody pins (None if a reader holds it)."""
    try:
        fh = open(folder / MANIFEST_FILE, "rb")
    except FileNotFoundError:
        return open(os.devnull, "rb")  # no manifest: never served, nothing to protect
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fh
    except BlockingIOError:
        fh.close()
        return None


def _generations(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if _GEN_RE.match(p.name) and p.is_dir())


def clean(index_dir: Path, keep: str | None) -> None:
    """Under the writer lock: remove temporary leftovers and every unpinned generation but ``keep``."""
    for p in index_dir.iterdir():
        if ".tmp-" in p.name:  # we hold the lock, so whoever wrote it is gone
            log.info("removing %s left by an interrupted change", p.name)
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    for name in _generations(index_dir):
        if name == keep:
            continue
        fh = _unused(index_dir / name)
        if fh is None:
            log.info("keeping generation %s: a reader still uses it", name)
            continue
        with fh:
            crash_point(f"removing old generation {name}")
            shutil.rmtree(index_dir / name, ignore_errors=True)
    if keep and keep != LEGACY and (index_dir / MANIFEST_FILE).is_file():
        fh = _unused(index_dir)
        if fh is not None:
            with fh:
                crash_point("removing the pre-generation files")
                for name in _LEGACY_FILES:
                    (index_dir / name).unlink(missing_ok=True)
    _clean_old_siblings(index_dir)


def _clean_old_siblings(index_dir: Path) -> None:
    """``DIR.tmp-<pid>-*`` beside the folder, from the two-rename swap before generations, if that pid is gone."""
    for p in index_dir.parent.glob(f"{index_dir.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("removing %s left by an interrupted build", p.name)
            shutil.rmtree(p, ignore_errors=True)
        except (IndexError, ValueError, PermissionError):
            continue


def check_target(target: Path) -> None:
    """Refuse to turn a folder that holds something else into an index (never delete user data)."""
    if not target.exists():
        return
    ours = {CURRENT_FILE, LOCK_FILE, OWNER_FILE, *_LEGACY_FILES}
    if not target.is_dir() or any(
        p.name not in ours and not _GEN_RE.match(p.name) and ".tmp-" not in p.name for p in target.iterdir()
    ):
        raise IndexStateError(f"{target} exists and is not a cxr index; choose another --out or remove it yourself")


class Writer:
    """The change in progress on one index, inside its writer lock (see :func:`writing`)."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self.pointer = read_pointer(index_dir)

    def source(self) -> Path | None:
        """The live generation to read from (verified first), or None when the folder holds no index yet."""
        if self.pointer is None:
            return None
        path = generation_path(self.index_dir, self.pointer)
        check_generation(self.index_dir, path, manifest_sha256=self.pointer.manifest_sha256,
                         generation=self.pointer.generation)
        return path

    def _next_name(self) -> str:
        nums = [int(_GEN_RE.match(n).group(1)) for n in _generations(self.index_dir)]  # type: ignore[union-attr]
        if self.pointer is not None and self.pointer.generation != LEGACY:
            nums.append(int(self.pointer.generation[4:]))
        return f"gen-{max(nums, default=0) + 1:06d}"

    @contextlib.contextmanager
    def new_generation(self, keep_old: bool = False) -> Iterator[Path]:
        """A fresh folder to write the next generation into; committed on success, deleted on error."""
        name = self._next_name()
        tmp = self.index_dir / f"{name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        tmp.mkdir()
        crash_point("staging folder created")
        try:
            yield tmp
            crash_point("new generation written")
            self._commit(tmp, name, keep_old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _commit(self, tmp: Path, name: str, keep_old: bool) -> None:
        sha = seal(tmp, name)
        crash_point("new generation sealed")
        os.rename(tmp, self.index_dir / name)
        fsync_dir(self.index_dir)
        crash_point("new generation in place")
        old = self.pointer
        pointer_tmp = self.index_dir / f"{CURRENT_FILE}.tmp-{os.getpid()}"
        with open(pointer_tmp, "w") as fh:
            fh.write(json.dumps({"generation": name, "manifest_sha256": sha}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        crash_point("pointer written")
        os.replace(pointer_tmp, self.index_dir / CURRENT_FILE)
        fsync_dir(self.index_dir)
        self.pointer = Pointer(name, sha)
        crash_point("pointer switched")
        log.info("index %s: generation %s is live", self.index_dir, name)
        if keep_old and old is not None:
            self._keep_copy(old)
        clean(self.index_dir, keep=name)
        crash_point("old generations cleaned")

    def _keep_copy(self, old: Pointer) -> None:
        """``--keep-old``: the previous generation becomes ``DIR.old``, a complete index folder of its own."""
        keep = self.index_dir.with_name(f"{self.index_dir.name}.old")
        if keep.exists():
            shutil.rmtree(keep)
        if old.generation == LEGACY:
            keep.mkdir()
            for f in _LEGACY_FILES:
                if (self.index_dir / f).is_file():
                    shutil.copy2(self.index_dir / f, keep / f)
        else:
            shutil.copytree(self.index_dir / old.generation, keep)


@contextlib.contextmanager
def writing(index_dir: str | Path, *, lock_timeout: float | None = None, create: bool = False) -> Iterator[Writer]:
    """Hold the writer lock of ``index_dir`` (made when ``create``), clean leftovers, yield a :class:`Writer`."""
    index_dir = Path(index_dir).resolve()
    if create:
        check_target(index_dir)
    elif not index_dir.is_dir():
        raise IndexMissingError(f"index folder {index_dir} not found: build one with "
                                f"`cxr index build --out {index_dir} KIND:PATH ...`")
    made = create and not index_dir.exists()
    try:
        with writer_lock(index_dir, lock_timeout):
            crash_point("writer lock taken")
            w = Writer(index_dir)
            clean(index_dir, keep=w.pointer.generation if w.pointer else None)
            yield w
    except BaseException:
        # A first build that failed leaves no folder behind (only its lock files would be there).
        if made and index_dir.is_dir() and {p.name for p in index_dir.iterdir()} <= {LOCK_FILE, OWNER_FILE}:
            shutil.rmtree(index_dir, ignore_errors=True)
        raise


def verify_index(index_dir: str | Path) -> dict[str, object]:
    """``cxr index verify``: the live generation's files against their checksums, and SQLite's quick_check."""
    index_dir = Path(index_dir).resolve()
    try:
        pinned = pin(index_dir)
    except IndexCorruptError as exc:
        return {"index": str(index_dir), "ok": False, "generation": None, "files": {}, "sqlite_quick_check": "not checked",
                "problems": [str(exc)], "notes": []}
    try:
        from index.integrity import verify_generation

        rep = verify_generation(pinned.path, manifest_sha256=pinned.pointer.manifest_sha256, generation=pinned.name)
    finally:
        pinned.close()
    others = [n for n in _generations(index_dir) if n != pinned.name]
    return {"index": str(index_dir), **rep.to_dict(), "other_generations": others}
