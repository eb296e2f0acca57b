"""SearchFilters -> allowed ids, computed *before* the kNN search.

Two translations of the same filters: SQL (``filters_to_sql``, used by the store and
any other database backend) and :class:`FilterColumns`, an in-memory columnar copy
of the filterable fields that the engine uses on every query (a broad filter over
10^6 cases takes milliseconds in numpy, against a table scan in SQL). Strings compare
case-insensitively (users type "pa").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from index.schemas import SearchFilters


def filters_to_sql(filters: SearchFilters | None, *, table: str = "cases") -> tuple[str, list[Any]]:
    """Return a WHERE clause (without the keyword; "1" when empty) and its parameters.

    Tombstoned (deleted) cases are always left out.
    """
    clauses: list[str] = [f"{table}.deleted = 0"]
    params: list[Any] = []
    if filters is None:
        return " AND ".join(clauses), params
    if filters.view:
        clauses.append(f"{table}.view COLLATE NOCASE IN ({', '.join('?' * len(filters.view))})")
        params.extend(filters.view)
    if filters.sex:
        clauses.append(f"{table}.sex = ?")
        params.append(filters.sex)
    if filters.age_min is not None:
        clauses.append(f"{table}.age >= ?")
        params.append(float(filters.age_min))
    if filters.age_max is not None:
        clauses.append(f"{table}.age <= ?")
        params.append(float(filters.age_max))
    if filters.source:
        clauses.append(f"{table}.source COLLATE NOCASE IN ({', '.join('?' * len(filters.source))})")
        params.extend(filters.source)
    if filters.finding:
        marks = ", ".join("?" * len(filters.finding))
        clauses.append(
            f"{table}.id IN (SELECT case_id FROM case_findings WHERE finding COLLATE NOCASE IN ({marks}))"
        )
        params.extend(filters.finding)
    return " AND ".join(clauses), params


class FilterColumns:
    """Filterable fields as numpy arrays indexed by case id (ids are dense: 1..max_id).

    Built once per opened index (the folder never changes under an open engine).
    ``mask(filters)`` returns a boolean array over ids: True = live case matching.
    """

    def __init__(self, rows: Iterable[tuple[int, str | None, str | None, float | None, str | None, int]],
                 findings: Iterable[tuple[int, str]]) -> None:
        rows = list(rows)
        size = (max((r[0] for r in rows), default=0)) + 1
        self.live = np.zeros(size, bool)
        self.age = np.full(size, np.nan, np.float32)
        # Strings as small integer codes per column: comparing int16 codes is far faster than objects.
        self._codes: dict[str, dict[str, int]] = {"view": {}, "sex": {}, "source": {}}
        cols = {name: np.zeros(size, np.int16) for name in self._codes}
        for cid, view, sex, age, source, deleted in rows:
            self.live[cid] = not deleted
            self.age[cid] = np.nan if age is None else age
            for name, value in (("view", view), ("sex", sex), ("source", source)):
                book = self._codes[name]
                key = (value or "").lower()
                cols[name][cid] = book.setdefault(key, len(book))
        self.view, self.sex, self.source = cols["view"], cols["sex"], cols["source"]
        by_finding: dict[str, list[int]] = {}
        for cid, finding in findings:
            by_finding.setdefault(finding.lower(), []).append(cid)
        self.findings = {f: np.asarray(v, np.int64) for f, v in by_finding.items()}

    def _isin(self, name: str, values: list[str]) -> np.ndarray:
        book = self._codes[name]
        col = getattr(self, name)
        out = np.zeros(self.size, bool)
        for code in {book[v.lower()] for v in values if v.lower() in book}:
            out |= col == code  # a few vectorised compares: faster than np.isin for short lists
        return out

    @property
    def size(self) -> int:
        return len(self.live)

    def mask(self, filters: SearchFilters | None) -> np.ndarray:
        """Live cases matching every criterion (any-of within a list)."""
        m = self.live.copy()
        if filters is None:
            return m
        if filters.view:
            m &= self._isin("view", filters.view)
        if filters.sex:
            m &= self._isin("sex", [filters.sex])
        if filters.age_min is not None:
            m &= self.age >= filters.age_min  # NaN (unknown age) compares False: excluded
        if filters.age_max is not None:
            m &= self.age <= filters.age_max
        if filters.source:
            m &= self._isin("source", filters.source)
        if filters.finding:
            has = np.zeros(self.size, bool)
            for f in filters.finding:
                ids = self.findings.get(f.lower())
                if ids is not None:
                    has[ids] = True
            m &= has
        return m


def quote(value: str) -> str:
    """A string literal for a Milvus expression (JSON escaping of quotes and backslashes).

    Milvus's parser rejects the ``\\u00XX`` escapes JSON writes for control characters, and
    the client cannot encode a lone surrogate: either would turn a user's odd filter value into
    a server error. No indexed view, sex, source or finding holds such characters, so such a
    value becomes a literal that matches nothing: the answer the FAISS side gives for it.
    (Checked against Milvus Lite: quotes, backslashes, tabs and non-ASCII letters pass as they are.)
    """
    text = str(value)
    if any(ord(ch) < 32 and ch != "\t" or 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return json.dumps("__no_such_value_" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest())
    return json.dumps(text, ensure_ascii=False)


def filters_to_milvus(filters: SearchFilters | None) -> str:
    """The same filters as a Milvus boolean expression ("" when empty) over the Milvus backend's fields.

    The collection stores view, sex, source and findings lower-cased, so lower-casing the
    values here gives the case-insensitive match of the other translations; an unknown age is
    stored as -1 and every age filter also asks ``age >= 0``, so it fails as NaN does in
    :class:`FilterColumns`.
    """
    if filters is None:
        return ""

    def any_of(field: str, values: list[str]) -> str:
        return f"{field} in [{', '.join(quote(v.lower()) for v in values)}]"

    clauses: list[str] = []
    if filters.view:
        clauses.append(any_of("view", filters.view))
    if filters.sex:
        clauses.append(f"sex == {quote(filters.sex.lower())}")
    if filters.age_min is not None or filters.age_max is not None:
        clauses.append("age >= 0.0")
    if filters.age_min is not None:
        clauses.append(f"age >= {float(filters.age_min)!r}")
    if filters.age_max is not None:
        clauses.append(f"age <= {float(filters.age_max)!r}")
    if filters.source:
        clauses.append(any_of("source", filters.source))
    if filters.finding:
        clauses.append(f"array_contains_any(findings, [{', '.join(quote(f.lower()) for f in filters.finding)}])")
    return " and ".join(clauses)
