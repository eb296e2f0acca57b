"""Keyed patient pseudonyms.

A patient id never leaves the reader: it becomes ``HMAC-SHA256(key, source:id)``.
The same patient always maps to the same pseudonym (patient-level splits and
same-patient search keep working) but nobody without the key can go back.

The patient split must not depend on that key, or nobody else could recompute published
validation figures. So, while the reader holds the raw id, :func:`pseudonymize` also notes a
keyless *split digest* (a hash of ``source:id`` with a fixed salt) against the pseudonym, in
this process's memory only: :func:`split_digest` gives it to :mod:`embed.split`, and it is
never stored, logged or returned (a keyless hash of a hospital number could be reversed by
trying every number, so it must not leave the process).
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
    pseudonym = f"p_{digest[:16]}"
    _SPLIT_DIGESTS[pseudonym] = hashlib.sha256(f"cxr-split:{source}:{raw}".encode()).hexdigest()[:16]
    return pseudonym


#: pseudonym -> keyless split digest, filled by :func:`pseudonymize` (memory only, see module doc).
_SPLIT_DIGESTS: dict[str, str] = {}


def split_digest(pseudonym: str | None) -> str | None:
    """The key-independent split digest of a patient read in this process (None if unknown here)."""
    return _SPLIT_DIGESTS.get(pseudonym) if pseudonym else None
