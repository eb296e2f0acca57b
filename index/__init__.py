"""The similar-case index: FAISS vectors + SQLite metadata, built atomically, searched by SearchEngine.

Heavy modules (faiss, torch) are imported by the submodules that need them, so
``import index`` stays cheap; import ``index.engine.SearchEngine`` for searching.
"""

from __future__ import annotations

from index.schemas import CaseRow, Hit, OutcomeSummary, SearchFilters, SearchResult

__all__ = ["CaseRow", "Hit", "OutcomeSummary", "SearchFilters", "SearchResult"]
