"""API keys: ``X-API-Key`` on every ``/v1`` path, compared in constant time.

401 without a key, 403 with a wrong one. The key is never logged: only its
*key id* (first 8 hex of its sha256) goes to the audit log. Where no key is
configured, ``/v1`` is open, which :func:`check_bind_policy` allows only on a
loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from embed.errors import CXRError
from search_api.settings import is_loopback

log = logging.getLogger("cxr.api")

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="One of the keys in CXR_API_API_KEYS / CXR_API_API_KEYS_FILE"
)


class InsecureBindError(CXRError):
    """Refusing to serve an open API on a non-loopback address."""

    code = "insecure_bind"


def key_id(key: str) -> str:
    """Non-reversible short id of a key for logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_matches(given: str, keys: list[str]) -> bool:
    """Constant-time check against *all* keys (no early exit, equal-length digests)."""
    given_d = _digest(given)
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_d, _digest(key))
    return found


def check_bind_policy(host: str, keys: list[str]) -> None:
    """Refuse an unauthenticated service anywhere but on loopback; warn on loopback."""
    if keys:
        return
    if not is_loopback(host):
        raise InsecureBindError(
            f"no API key configured: refusing to listen on {host!r}. Set CXR_API_API_KEYS "
            "(or CXR_API_API_KEYS_FILE), or bind 127.0.0.1"
        )
    log.warning("no API key configured: /v1 is open to every local process (bind %s only)", host)


def require_api_key(
    request: Request,
    api_key: str | None = Security(api_key_header),
) -> None:
    """Dependency of the /v1 router; the keys were read once at start-up into ``app.state``."""
    keys: list[str] = getattr(request.app.state, "api_keys", None) or []
    if not keys:
        # Defence in depth for `uvicorn --host 0.0.0.0` started by hand: an open API answers local clients only.
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            raise HTTPException(403, "no API key is configured on this server, so only local clients are served")
        return
    if not api_key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header",
                            headers={"WWW-Authenticate": "APIKey"})
    if not key_matches(api_key, keys):
        raise HTTPException(403, "invalid API key")
    request.state.key_id = key_id(api_key)
