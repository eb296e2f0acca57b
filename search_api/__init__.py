"""FastAPI similar-case search service: ``create_app`` builds it, ``cxr serve`` runs it."""

from __future__ import annotations

API_VERSION = "v1"
