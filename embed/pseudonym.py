"""Keyed patient pseudonyms.

A patient id never leaves the reader: it becomes ``HMAC-SHA256(key, source:id)``.
The same patient always maps to the same pseudonym (patient-level splits and
same-patient search keep working) but nobody without the key can go back.
"""

from __future__ import annotations

import hashlib
import hmac

from embed.settings import get_settings


def pseudonymize(source: str, patient_id: str | int | None, key: bytes | None = None) -> str | None:
    """Return ``p_<16 hex>`` for a raw patient id of ``source``; ``None`` stays ``None``."""
    if patient_id is None:
        return None
    raw = str(patient_id).strip()
    if not raw or raw.lower() == "nan":
        return None
    key = key if key is not None else get_settings().resolved_pseudonym_key()
    digest = hmac.new(key, f"{source}:{raw}".encode(), hashlib.sha256).hexdigest()
    return f"p_{digest[:16]}"
