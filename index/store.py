"""The metadata store: one row per indexed case, keyed by the same int64 id as the FAISS index.

:class:`MetadataStore` is the small interface the builder and engine use, so
another database can be plugged in later; :class:`SQLiteStore` is the default,
a file in each index generation. A read-only store is one immutable snapshot
connection shared by every thread; a writable one (only ever a generation being
written) gives each thread its own connection.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embed.cases import CaseFields, field_kind, is_required
from embed.errors import IndexStateError
from index.filters import FilterColumns, filters_to_sql
from index.schemas import CaseRow, SearchFilters

log = logging.getLogger(__name__)

STORE_FILE = "store.sqlite"

_SQL_TYPES = {"str": "TEXT", "float": "REAL", "int": "INTEGER", "bool": "INTEGER"}
_JSON_DEFAULTS = {"list": "'[]'", "dict": "'{}'"}


def _column(name: str) -> str:
    """The SQL column of a shared case field: lists and dicts as JSON text."""
    kind = field_kind(CaseFields.model_fields[name].annotation)
    if kind in _JSON_DEFAULTS:
        return f"{name} TEXT NOT NULL DEFAULT {_JSON_DEFAULTS[kind]}"
    return f"{name} {_SQL_TYPES[kind]}" + (" NOT NULL" if is_required(CaseFields, name) else "")


#: The shared case fields (embed.cases.CaseFields), in the order of every INSERT and SELECT.
_FIELDS = tuple(CaseFields.model_fields)
_JSON_FIELDS = frozenset(n for n in _FIELDS if field_kind(CaseFields.model_fields[n].annotation) in _JSON_DEFAULTS)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    {", ".join(_column(n) for n in _FIELDS)},
    image_path TEXT,
    ref TEXT,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS case_findings (
    case_id INTEGER NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
    finding TEXT NOT NULL,
    PRIMARY KEY (case_id, finding)
);
CREATE INDEX IF NOT EXISTS ix_findings_finding ON case_findings(finding COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS ix_cases_source ON cases(source);
CREATE INDEX IF NOT EXISTS ix_cases_patient ON cases(patient);
CREATE INDEX IF NOT EXISTS ix_cases_view ON cases(view);
"""

#: What a CaseRow is read from: its keys, then the shared fields.
_ROW_COLS = ", ".join(("id", "sha256") + _FIELDS)
_INSERT_COLS = ("id", "sha256") + _FIELDS + ("image_path", "ref")


class StoredCase(CaseFields):
    """A case as written into the store (internal: includes the image location)."""

    id: int
    sha256: str
    image_path: str
    ref: str = ""


def _encode(name: str, value: Any) -> Any:
    """The SQL value of a field: JSON text for lists (each item once, sorted) and dicts."""
    if name in _JSON_FIELDS:
        if isinstance(value, list):
            value = sorted({str(v) for v in value})
        return json.dumps(value, sort_keys=True, default=str)
    return value


@runtime_checkable
class MetadataStore(Protocol):
    """What the builder and the engine need from a metadata database."""

    def add(self, cases: Iterable[StoredCase]) -> int: ...
    def get(self, ids: Iterable[int]) -> list[CaseRow]: ...
    def get_one(self, case_id: int) -> CaseRow | None: ...
    def patient_of(self, case_id: int) -> str | None: ...
    def sha_to_id_one(self, sha: str) -> int | None: ...
    def all_ids(self, include_deleted: bool = False) -> np.ndarray: ...
    def existing_ids(self, ids: Iterable[int]) -> np.ndarray: ...
    def filter_columns(self) -> FilterColumns: ...
    def backup_to(self, dest: str | Path) -> MetadataStore: ...
    def image_path(self, case_id: int) -> str | None: ...
    def ids_matching(self, filters: SearchFilters | None) -> np.ndarray: ...
    def list_cases(self, filters: SearchFilters | None, offset: int = 0,
                   limit: int = 50) -> tuple[int, list[CaseRow]]: ...
    def ids_for_patient(self, patient: str) -> np.ndarray: ...
    def ids_for_source(self, sources: Iterable[str]) -> np.ndarray: ...
    def sha_to_id(self) -> dict[str, int]: ...
    def deleted_ids(self) -> np.ndarray: ...
    def mark_deleted(self, ids: Iterable[int]) -> int: ...
    def revive(self, ids: Iterable[int]) -> int: ...
    def delete(self, ids: Iterable[int]) -> int: ...
    def count(self, include_deleted: bool = False) -> int: ...
    def max_id(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class SQLiteStore:
    """SQLite implementation of :class:`MetadataStore` (one connection per thread, WAL)."""

    def __init__(self, path: str | Path, *, create: bool = False, read_only: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise IndexStateError(
                f"metadata store {self.path} is missing: the index folder is incomplete; "
                "rebuild it with `cxr index build`"
            )
        self.read_only = read_only
        if read_only:
            # One connection for every thread, opened now: a published generation never changes
            # (immutable=1: no locks, no WAL files), and the open file keeps answering even if the
            # folder is deleted later, so a reader never mixes two states or fails half-way.
            # SQLite is built serialized (sqlite3.threadsafety == 3), so threads may share it.
            self._snapshot = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                             check_same_thread=False)
        self._local = threading.local()
        self._lock = threading.Lock()  # serialises writers; readers run freely
        self._conns: dict[int, sqlite3.Connection] = {}  # by thread ident
        if create:
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.commit()

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self.read_only:
            return self._snapshot
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._prune_dead_threads()
                self._conns[threading.get_ident()] = conn
        return conn

    def _prune_dead_threads(self) -> None:
        """Close the connections of threads that have ended (thread pools retire idle threads)."""
        alive = {t.ident for t in threading.enumerate()}
        for ident in [i for i in self._conns if i not in alive]:
            try:
                self._conns.pop(ident).close()
            except sqlite3.Error:  # pragma: no cover - closing a dead thread's connection
                pass

    def close(self) -> None:
        """Close every thread's connection (checkpointing the WAL into the main file)."""
        if self.read_only:
            self._snapshot.close()
            return
        with self._lock:
            for conn in self._conns.values():
                try:
                    if not self.read_only:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    conn.close()
                except sqlite3.Error:  # pragma: no cover - closing is best effort
                    pass
            self._conns.clear()
        self._local = threading.local()

    def backup_to(self, dest: str | Path) -> SQLiteStore:
        """Copy the whole database consistently (sqlite backup API) and open the copy for writing."""
        dest_store = SQLiteStore(dest, create=True)
        self._conn().backup(dest_store._conn())
        return dest_store

    # -- writing -----------------------------------------------------------------------------
    def add(self, cases: Iterable[StoredCase]) -> int:
        """Insert cases in one transaction; returns how many were written."""
        rows, links = [], []
        for c in cases:
            rows.append(tuple(_encode(name, getattr(c, name)) for name in _INSERT_COLS))
            links.extend((int(c.id), f) for f in sorted({str(f) for f in c.findings}))
        with self._lock:
            conn = self._conn()
            with conn:
                conn.executemany(
                    f"INSERT INTO cases ({', '.join(_INSERT_COLS)}) VALUES ({', '.join('?' * len(_INSERT_COLS))})",
                    rows,
                )
                conn.executemany("INSERT INTO case_findings (case_id, finding) VALUES (?, ?)", links)
        return len(rows)

    def mark_deleted(self, ids: Iterable[int]) -> int:
        """Tombstone cases (for index types that cannot remove vectors): hidden from every query."""
        ids = [(int(i),) for i in ids]
        with self._lock:
            conn = self._conn()
            with conn:
                cur = conn.executemany("UPDATE cases SET deleted = 1 WHERE id = ? AND deleted = 0", ids)
        return cur.rowcount

    def revive(self, ids: Iterable[int]) -> int:
        """Undo a tombstone (the same image added again while its vector is still in the index)."""
        ids = [(int(i),) for i in ids]
        with self._lock:
            conn = self._conn()
            with conn:
                cur = conn.executemany("UPDATE cases SET deleted = 0 WHERE id = ?", ids)
        return cur.rowcount

    def delete(self, ids: Iterable[int]) -> int:
        """Remove cases and their finding links for good."""
        ids = [(int(i),) for i in ids]
        with self._lock:
            conn = self._conn()
            with conn:
                conn.executemany("DELETE FROM case_findings WHERE case_id = ?", ids)
                cur = conn.executemany("DELETE FROM cases WHERE id = ?", ids)
        return cur.rowcount

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    def _row(r: tuple) -> CaseRow:
        fields = {name: json.loads(v) if name in _JSON_FIELDS else v for name, v in zip(_FIELDS, r[2:])}
        return CaseRow(id=r[0], sha256=r[1], **fields)

    def get(self, ids: Iterable[int]) -> list[CaseRow]:
        """Rows for these ids, in the order given (unknown or deleted ids left out)."""
        ids = [int(i) for i in ids]
        if not ids:
            return []
        found: dict[int, CaseRow] = {}
        conn = self._conn()
        for start in range(0, len(ids), 900):  # stay under SQLite's parameter limit
            chunk = ids[start:start + 900]
            q = f"SELECT {_ROW_COLS} FROM cases WHERE deleted = 0 AND id IN ({', '.join('?' * len(chunk))})"
            for r in conn.execute(q, chunk):
                found[r[0]] = self._row(r)
        return [found[i] for i in ids if i in found]

    def get_one(self, case_id: int) -> CaseRow | None:
        rows = self.get([case_id])
        return rows[0] if rows else None

    def image_path(self, case_id: int) -> str | None:
        """Internal only: where the image file is (never returned to clients)."""
        r = self._conn().execute("SELECT image_path FROM cases WHERE id = ? AND deleted = 0", (int(case_id),)).fetchone()
        return r[0] if r else None

    def _ids(self, sql: str, params: Iterable[Any] = ()) -> np.ndarray:
        rows = self._conn().execute(sql, list(params)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def ids_matching(self, filters: SearchFilters | None) -> np.ndarray:
        """Ids of live cases matching the filters (sorted)."""
        where, params = filters_to_sql(filters)
        return self._ids(f"SELECT id FROM cases WHERE {where} ORDER BY id", params)

    def list_cases(self, filters: SearchFilters | None, offset: int = 0, limit: int = 50) -> tuple[int, list[CaseRow]]:
        """(number of live cases matching, one page of them in id order): browsing the index."""
        where, params = filters_to_sql(filters)
        conn = self._conn()
        total = int(conn.execute(f"SELECT COUNT(*) FROM cases WHERE {where}", params).fetchone()[0])
        rows = conn.execute(f"SELECT {_ROW_COLS} FROM cases WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
                            [*params, int(limit), int(offset)]).fetchall()
        return total, [self._row(r) for r in rows]

    def ids_for_patient(self, patient: str) -> np.ndarray:
        return self._ids("SELECT id FROM cases WHERE patient = ? AND deleted = 0 ORDER BY id", [patient])

    def ids_for_source(self, sources: Iterable[str]) -> np.ndarray:
        sources = list(sources)
        marks = ", ".join("?" * len(sources))
        return self._ids(
            f"SELECT id FROM cases WHERE source COLLATE NOCASE IN ({marks}) AND deleted = 0 ORDER BY id", sources
        )

    def existing_ids(self, ids: Iterable[int]) -> np.ndarray:
        """The subset of ``ids`` that are live cases."""
        return np.array([r.id for r in self.get(ids)], dtype=np.int64)

    def sha_to_id(self) -> dict[str, int]:
        """Content hash -> id of every stored case (deleted ones too: a re-add revives nothing twice)."""
        return {sha: i for i, sha in self._conn().execute("SELECT id, sha256 FROM cases")}

    def sha_to_id_one(self, sha: str) -> int | None:
        """Id of the live case with this content hash, if any."""
        r = self._conn().execute("SELECT id FROM cases WHERE sha256 = ? AND deleted = 0", (sha,)).fetchone()
        return int(r[0]) if r else None

    def deleted_ids(self) -> np.ndarray:
        return self._ids("SELECT id FROM cases WHERE deleted = 1 ORDER BY id")

    def all_ids(self, include_deleted: bool = False) -> np.ndarray:
        where = "" if include_deleted else "WHERE deleted = 0"
        return self._ids(f"SELECT id FROM cases {where} ORDER BY id")

    def count(self, include_deleted: bool = False) -> int:
        where = "" if include_deleted else "WHERE deleted = 0"
        return int(self._conn().execute(f"SELECT COUNT(*) FROM cases {where}").fetchone()[0])

    def max_id(self) -> int:
        r = self._conn().execute("SELECT MAX(id) FROM cases").fetchone()[0]
        return int(r) if r is not None else 0

    def patient_of(self, case_id: int) -> str | None:
        r = self._conn().execute("SELECT patient FROM cases WHERE id = ?", (int(case_id),)).fetchone()
        return r[0] if r else None

    def stats(self) -> dict[str, Any]:
        """Counts of live cases per source, view, sex and finding, plus deleted (tombstoned) ones."""
        conn = self._conn()

        def grouped(col: str) -> dict[str, int]:
            q = f"SELECT COALESCE({col}, 'unknown'), COUNT(*) FROM cases WHERE deleted = 0 GROUP BY 1 ORDER BY 2 DESC"
            return {str(k): int(n) for k, n in conn.execute(q)}

        findings = {
            str(k): int(n)
            for k, n in conn.execute(
                "SELECT f.finding, COUNT(*) FROM case_findings f JOIN cases c ON c.id = f.case_id "
                "WHERE c.deleted = 0 GROUP BY 1 ORDER BY 2 DESC"
            )
        }
        return {
            "cases": self.count(),
            "deleted": self.count(include_deleted=True) - self.count(),
            "patients": int(conn.execute(
                "SELECT COUNT(DISTINCT patient) FROM cases WHERE deleted = 0 AND patient IS NOT NULL").fetchone()[0]),
            "by_source": grouped("source"),
            "by_view": grouped("view"),
            "by_sex": grouped("sex"),
            "by_finding": findings,
        }

    def filter_columns(self) -> FilterColumns:
        """The filterable fields of every case, as an in-memory :class:`index.filters.FilterColumns`."""
        conn = self._conn()
        return FilterColumns(conn.execute("SELECT id, view, sex, age, source, deleted FROM cases"),
                             conn.execute("SELECT case_id, finding FROM case_findings"))

    def refs_for_source(self, source: str) -> set[str]:
        """The dataset case ids (``ref``) of the live cases of one source: what a reader may skip re-reading."""
        rows = self._conn().execute("SELECT ref FROM cases WHERE source = ? AND deleted = 0", (source,))
        return {r[0] for r in rows if r[0]}
