"""Index folder layout and the atomic swap that keeps a failed build from touching the live index.

Every change (build, add, remove, rebuild) is written into ``DIR.tmp-<pid>-<rand>``
beside the target, then swapped in by renaming directories: the live folder becomes
``DIR.old-…``, the new one becomes ``DIR``, and the old copy is deleted (or kept as
``DIR.old`` with ``keep_old``). An exception or kill before the swap leaves ``DIR``
untouched; the stale temporary folder is removed by the next build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from embed.errors import IndexStateError
from index.manifest import MANIFEST_FILE

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's live process
        return True
    return True


def clean_stale(target: Path) -> None:
    """Remove ``target.tmp-<pid>-*`` folders left by builds whose process is gone."""
    for p in target.parent.glob(f"{target.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid) and p.is_dir():
            log.info("removing %s left by an interrupted build", p.name)
            shutil.rmtree(p, ignore_errors=True)


def check_target(target: Path) -> None:
    """Refuse to replace a folder that exists but is not an index (never delete user data)."""
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / MANIFEST_FILE).is_file())):
        raise IndexStateError(
            f"{target} exists and is not a cxr index (no {MANIFEST_FILE}); choose another --out or remove it yourself"
        )


def swap_in(tmp: Path, target: Path, keep_old: bool = False) -> None:
    """Make ``tmp`` the new ``target`` by two directory renames; roll back if the second fails."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f"{target.name}.old-{os.getpid()}-{secrets.token_hex(3)}")
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        if keep_old:
            keep = target.with_name(f"{target.name}.old")
            if keep.exists():
                shutil.rmtree(keep, ignore_errors=True)
            os.rename(old, keep)
        else:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging(target: str | Path, keep_old: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; swap it in on success, delete it on failure."""
    target = Path(target).resolve()
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, target, keep_old=keep_old)


def disk_size(folder: str | Path) -> int:
    """Bytes used by the files of an index folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
