"""One writer per index folder: a real file lock (``filelock``), held for the whole change.

Two ``cxr index add`` on one index used to both read the same generation and the last
to finish silently dropped the other's cases. Every change now takes ``DIR/.write.lock``
first; a second writer waits (``--lock-timeout``, default ``CXR_INDEX_LOCK_TIMEOUT`` or
600 s) and then re-reads the generation the first one produced, or gives up with a message
naming who holds the lock. The lock is an OS lock (flock): it dies with its process, so a
killed writer never leaves the index locked. Readers never take it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from embed.errors import IndexStateError

log = logging.getLogger(__name__)

LOCK_FILE = ".write.lock"
OWNER_FILE = ".write.owner"
DEFAULT_TIMEOUT_S = 600.0


class IndexBusyError(IndexStateError):
    """Another process is changing this index and did not finish within the lock timeout."""

    code = "index_busy"


def default_timeout() -> float:
    """``CXR_INDEX_LOCK_TIMEOUT`` seconds (negative: wait forever), else 600."""
    raw = os.environ.get("CXR_INDEX_LOCK_TIMEOUT", "").strip()
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _owner(index_dir: Path) -> str:
    try:
        info = json.loads((index_dir / OWNER_FILE).read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} ({info['command']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def writer_lock(index_dir: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the index's writer lock; wait up to ``timeout`` s (None: the default) or raise IndexBusyError."""
    from filelock import FileLock, Timeout

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    timeout = default_timeout() if timeout is None else float(timeout)
    # preserve_lock_file: deleting the file on release would let two writers lock two different inodes
    lock = FileLock(str(index_dir / LOCK_FILE), thread_local=False, preserve_lock_file=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("index %s is being changed by %s; waiting for it (up to %s)", index_dir.name,
                    _owner(index_dir), "ever" if timeout < 0 else f"{timeout:.0f} s")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise IndexBusyError(
                f"index {index_dir} is being changed by {_owner(index_dir)}; waited {timeout:.0f} s. "
                "Try again when it has finished, or wait longer with --lock-timeout SECONDS"
            ) from None
    try:
        prog = Path(sys.argv[0]).parent.name if sys.argv and sys.argv[0].endswith("__main__.py") else \
            Path(sys.argv[0] if sys.argv else "python").name
        command = " ".join(["cxr" if prog in ("cli", "cxr") else prog, *sys.argv[1:3]])
        (index_dir / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}))
        yield
    finally:
        lock.release()
