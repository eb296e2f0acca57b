"""HTTP client of the search API, with typed errors the page can show as plain sentences.

The page never imports the engine: everything goes through this client so the
page can run on another machine than the index. Every failure (network, auth,
bad image, server error) becomes an :class:`APIError` subclass whose
``user_message`` is safe to display (no stack trace, no server internals).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: The same-patient modes the API accepts (the page's radio maps onto these).
SAME_PATIENT_MODES = ("exclude", "include", "only")


class APIError(Exception):
    """Any failure talking to the API; ``user_message`` is what the page shows."""

    status: int | None = None
    code: str = "api_error"

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    #: the sentence the page shows; ``{detail}`` is the API's own message
    template: str = "The search service returned an error: {detail}"

    @property
    def user_message(self) -> str:
        return self.template.format(detail=self.detail)


class ServiceUnavailableError(APIError):
    """The API cannot be reached, timed out, or says it is not ready (503)."""

    code = "service_unavailable"
    template = "The search service is not available: {detail}"


class AuthError(APIError):
    """401/403: missing or wrong API key."""

    code = "unauthorized"
    template = (
        "The search service refused the API key. Set CXR_UI_API_KEY (or api_key in "
        "Streamlit secrets) to the key the API was started with. ({detail})"
    )


class BadImageError(APIError):
    """413/415/422 on an uploaded image: not an image, truncated, unsupported, too large."""

    code = "bad_image"
    template = "This file could not be used as a chest X-ray: {detail}"


class InvalidRequestError(APIError):
    """400/422 on parameters (not on the image): e.g. an impossible age range."""

    code = "invalid_request"
    template = "The search request was not accepted: {detail}"


class NotFoundError(APIError):
    """404: no such case."""

    code = "not_found"
    template = "Not found: {detail}"


_IMAGE_CODES = {"not_an_image", "image_unreadable", "truncated_image", "unsupported_image", "image_too_large"}


def error_from_response(resp: httpx.Response) -> APIError:
    """Map an error response ({"error": code, "detail": message}) onto the typed errors."""
    code, detail = None, None
    try:
        body = resp.json()
        if isinstance(body, dict):
            code = body.get("error") if isinstance(body.get("error"), str) else None
            raw = body.get("detail")
            if isinstance(raw, str):
                detail = raw
            elif raw is not None:  # FastAPI's default validation list, if the API ever leaks one
                detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in raw) \
                    if isinstance(raw, list) else str(raw)
    except ValueError:
        pass
    status = resp.status_code
    detail = detail or f"HTTP {status} {resp.reason_phrase}".strip()
    if status in (401, 403):
        cls: type[APIError] = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status in (413, 415) or (code in _IMAGE_CODES) or code == "upload_too_large":
        cls = BadImageError
    elif status in (502, 503, 504) or code in ("index_state", "index_not_loaded", "config_mismatch"):
        cls = ServiceUnavailableError
    elif status in (400, 422):
        cls = InvalidRequestError
    elif status == 409:
        cls = ServiceUnavailableError
    else:
        cls = APIError
    return cls(detail, status=status, code=code)


@dataclass
class SearchParams:
    """The sidebar's choices; ``to_form`` turns them into the multipart form fields."""

    k: int = 10
    view: list[str] = field(default_factory=list)
    sex: str | None = None
    age_min: float | None = None
    age_max: float | None = None
    source: list[str] = field(default_factory=list)
    finding: list[str] = field(default_factory=list)
    same_patient: str = "exclude"
    view_scope: str = "same"  # "same": the query's view family only; "any": every view
    query_view: str | None = None  # the query's view when the reader knows better than the file

    def to_form(self) -> list[tuple[str, str]]:
        """Form fields; lists are repeated keys, absent filters are left out."""
        form: list[tuple[str, str]] = [("k", str(int(self.k))), ("same_patient", self.same_patient),
                                       ("view_scope", self.view_scope)]
        if self.query_view:
            form.append(("query_view", self.query_view))
        for name in ("view", "source", "finding"):
            form += [(name, v) for v in getattr(self, name) or []]
        if self.sex:
            form.append(("sex", self.sex))
        if self.age_min is not None:
            form.append(("age_min", f"{self.age_min:g}"))
        if self.age_max is not None:
            form.append(("age_max", f"{self.age_max:g}"))
        return form

    def key(self) -> tuple:
        """Hashable identity, used to cache a result in the page's session state."""
        return tuple(self.to_form())


class CXRClient:
    """Thin synchronous client; one instance per page session (keeps the connection pool)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CXRClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServiceUnavailableError(f"no answer from {self.base_url} in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(
                f"cannot connect to {self.base_url}; is `cxr serve` running? ({type(exc).__name__})"
            ) from exc
        if resp.status_code >= 400:
            err = error_from_response(resp)
            log.info("API %s %s -> %s %s", method, path, resp.status_code, err.code)
            raise err
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, **kwargs)
        try:
            return resp.json()
        except ValueError as exc:
            raise APIError(f"{path} did not return JSON", status=resp.status_code) from exc

    # -- endpoints -----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health")

    def stats(self) -> dict[str, Any]:
        return self._json("GET", "/v1/stats")

    def search(self, image: bytes, params: SearchParams | None = None, *,
               filename: str = "query", content_type: str = "application/octet-stream") -> dict[str, Any]:
        """POST /v1/search with the image bytes (never written to disk)."""
        params = params or SearchParams()
        files = {"file": (filename or "query", image, content_type)}
        data: dict[str, list[str]] = {}
        for name, value in params.to_form():  # repeated keys become lists (httpx's multipart form)
            data.setdefault(name, []).append(value)
        return self._json("POST", "/v1/search", files=files, data=data)

    def list_cases(self, *, offset: int = 0, limit: int = 50, source: list[str] | None = None,
                   finding: list[str] | None = None, view_family: str | None = None) -> dict[str, Any]:
        """GET /v1/cases: one page of indexed cases ({"total", "offset", "limit", "cases"})."""
        query: list[tuple[str, str]] = [("offset", str(int(offset))), ("limit", str(int(limit)))]
        query += [("source", s) for s in source or []] + [("finding", f) for f in finding or []]
        if view_family:
            query.append(("view_family", view_family))
        return self._json("GET", "/v1/cases", params=query)

    def case(self, case_id: int) -> dict[str, Any]:
        return self._json("GET", f"/v1/cases/{int(case_id)}")

    def case_image(self, case_id: int, size: int | None = None) -> bytes:
        """The case's standardized PNG (the API needs the key, so the page fetches it)."""
        query = {"size": int(size)} if size else None
        return self._request("GET", f"/v1/cases/{int(case_id)}/image", params=query).content

    def similar(self, case_id: int, params: SearchParams | None = None, *,
                attention: bool = True) -> dict[str, Any]:
        """Neighbours of an indexed case (the case itself is never among the hits)."""
        params = params or SearchParams()
        query = params.to_form() + [("attention", "true" if attention else "false")]
        return self._json("GET", f"/v1/cases/{int(case_id)}/similar", params=query)

    # -- the hospital's PACS (configured on the API server) ---------------------------
    def pacs_studies(self, limit: int = 20) -> list[dict[str, Any]]:
        """Recent chest studies of the server's PACS: de-identified, each with a ``handle``."""
        return list(self._json("GET", "/v1/pacs/studies", params={"limit": int(limit)}).get("studies", []))

    def search_pacs(self, handle: str, params: SearchParams | None = None, *, store: bool = False) -> dict[str, Any]:
        """POST /v1/search/dicomweb with a study handle; ``store`` sends the similar cases back as a KOS note."""
        body: dict[str, Any] = {"study": handle, "store": bool(store)}
        for name, value in (params or SearchParams()).to_form():
            if name in ("view", "source", "finding"):
                body.setdefault(name, []).append(value)
            else:
                body[name] = value
        return self._json("POST", "/v1/search/dicomweb", json=body)
