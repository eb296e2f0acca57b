"""SearchFilters -> SQL over the metadata store, so filtering happens *before* the kNN search.

Kept apart from the store so another database backend can translate the same
filters its own way; strings compare case-insensitively (users type "pa").
"""

from __future__ import annotations

from typing import Any

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
