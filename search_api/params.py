"""The validation rules of request parameters, in one place, shared by every route.

Each rule is an ``Annotated`` type: the route signatures (which produce the
OpenAPI schema), the upload routes' own form parser (:class:`search_api.deps.QueryParams`)
and the multipart schema of :mod:`search_api.routes.search` all use these, so a
value is accepted or refused (422) the same way on every route and the schema
says exactly what the server enforces.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BeforeValidator, Field

# SQLite stores ids as signed 64-bit integers: a larger id can name no case, and
# must be refused before it reaches the driver (which raises OverflowError).
MAX_CASE_ID = 2**63 - 1
AGE_MAX = 130.0
MIN_THUMB_SIZE = 16

SEX_VALUES = ("M", "F")
SAME_PATIENT_VALUES = ("exclude", "include", "only")

MAX_LIST_ITEMS = 16  # repeats of one list field (view, source, finding); comma-separate for more values


def _strict_bool(value: Any) -> Any:
    """``true``/``false`` (any case) or a real bool: "0", "yes", "on" are not booleans in the schema."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        raise ValueError("must be true or false")
    return value


Sex = Literal["M", "F"]
Flag = Annotated[bool, BeforeValidator(_strict_bool)]
SamePatient = Literal["exclude", "include", "only"]
ViewScope = Literal["same", "any"]
VIEW_SCOPE_VALUES = ("same", "any")
MAX_VIEW_LEN = 32
Age = Annotated[float, Field(ge=0, le=AGE_MAX, allow_inf_nan=False)]

CaseId = Annotated[int, Path(ge=0, le=MAX_CASE_ID, description="integer case id as returned in hits",
                             examples=[17])]
SexQuery = Annotated[Sex | None, Query(description="M or F (exactly)")]
AgeQuery = Annotated[float | None, Query(ge=0, le=AGE_MAX, allow_inf_nan=False,
                                         description="years; age_min must not exceed age_max")]
SamePatientQuery = Annotated[SamePatient, Query()]
FlagQuery = Annotated[bool, BeforeValidator(_strict_bool), Query(description="true or false")]
ListQuery = Annotated[list[str] | None, Query(max_length=MAX_LIST_ITEMS,
                                              description="repeat (at most 16 times) or comma-separate")]


def form_schema(max_k: int, max_upload_bytes: int) -> dict[str, dict]:
    """JSON schema of the upload routes' form fields, with the limits this server enforces."""
    # 3 lists of 16 + 9 other fields stay under the parser's 64 parts (longer lists: comma-separate)
    lst = {"type": "array", "maxItems": MAX_LIST_ITEMS, "items": {"type": "string"}}
    return {
        "file": {"type": "string", "format": "binary", "maxLength": max_upload_bytes,
                 "description": "a PNG, JPEG or DICOM image, recognised by its content (not by name or "
                                f"Content-Type), at most {max_upload_bytes} bytes (CXR_API_MAX_UPLOAD_BYTES); "
                                "anything else is answered 415, an image that cannot be decoded 422"},
        "k": {"type": "integer", "minimum": 1, "maximum": max_k, "default": 10,
              "description": f"neighbours (1..{max_k}, CXR_API_MAX_K)"},
        "view": {**lst, "description": "views to keep, e.g. PA, AP (repeat or comma-separate)"},
        "sex": {"type": "string", "enum": list(SEX_VALUES)},
        "age_min": {"type": "number", "minimum": 0, "maximum": AGE_MAX, "description": "years, at most age_max"},
        "age_max": {"type": "number", "minimum": 0, "maximum": AGE_MAX, "description": "years, at least age_min"},
        "source": {**lst, "description": "sources to keep, e.g. covid-chestxray"},
        "finding": {**lst, "description": "keep cases with any of these findings"},
        "same_patient": {"type": "string", "enum": list(SAME_PATIENT_VALUES), "default": "exclude",
                         "description": "neighbours of the query's own patient; 'only' needs a query whose patient "
                                        "is known (an indexed image, or a DICOM with a patient id), else 422"},
        "attention": {"type": "boolean", "default": True, "description": "return the attention map (true or false)"},
        "view_scope": {"type": "string", "enum": list(VIEW_SCOPE_VALUES), "default": "same",
                       "description": "same: only neighbours of the query's view family (frontal PA/AP or lateral; "
                                      "cases of unknown view stay eligible; a view filter wins); any: every view"},
        "query_view": {"type": "string", "maxLength": MAX_VIEW_LEN,
                       "description": "the query's view when the file does not say it (e.g. PA, LATERAL)"},
    }
