"""Errors the index and engine raise for things a user (or API client) can cause."""

from __future__ import annotations

from embed.errors import CXRError, IndexStateError


class CaseNotFoundError(CXRError):
    """No live case has this id (never indexed, or removed)."""

    http_status = 404
    code = "case_not_found"


class QueryError(CXRError):
    """The query cannot be answered as asked (e.g. same-patient search for an unknown patient)."""

    http_status = 422
    code = "bad_query"


class IndexCorruptError(IndexStateError):
    """An index file does not match the checksum its manifest recorded, or SQLite finds damage."""

    code = "index_corrupt"


class IndexMissingError(IndexStateError):
    """The index folder, its pointer or its live generation is not there."""

    code = "index_missing"
