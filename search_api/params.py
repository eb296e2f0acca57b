"""The validation rules of request parameters, in one place, shared by every route.

Each rule is an ``Annotated`` type: the route signatures (which produce the
OpenAPI schema), the upload routes' own form parser (:class:`search_api.deps.QueryParams`)
and the multipart schema of :mod:`search_api.routes.search` all use these, so a
value is accepted or refused (422) the same way on every route and the schema
says exactly what the server enforces.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import Field

# SQLite stores ids as signed 64-bit integers: a larger id can name no case, and
# must be refused before it reaches the driver (which raises OverflowError).
MAX_CASE_ID = 2**63 - 1
AGE_MAX = 130.0
MIN_THUMB_SIZE = 16
MULTIPART_MAX_PARTS = 64  # the upload parser's cap (search_api.uploads.MAX_FIELDS)

SEX_VALUES = ("M", "F")
SAME_PATIENT_VALUES = ("exclude", "include", "only")

Sex = Literal["M", "F"]
SamePatient = Literal["exclude", "include", "only"]
Age = Annotated[float, Field(ge=0, le=AGE_MAX, allow_inf_nan=False)]

CaseId = Annotated[int, Path(ge=0, le=MAX_CASE_ID, description="integer case id as returned in hits",
                             examples=[17])]
SexQuery = Annotated[Sex | None, Query(description="M or F (exactly)")]
AgeQuery = Annotated[float | None, Query(ge=0, le=AGE_MAX, allow_inf_nan=False,
                                         description="years; age_min must not exceed age_max")]
SamePatientQuery = Annotated[SamePatient, Query()]


def form_schema(max_k: int, max_upload_bytes: int) -> dict[str, dict]:
    """JSON schema of the upload routes' form fields, with the limits this server enforces."""
    lst = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 256}}
    return {
        "file": {"type": "string", "format": "binary", "maxLength": max_upload_bytes,
                 "description": f"PNG, JPEG or DICOM, recognised by content (not by name or type); "
                                f"at most {max_upload_bytes} bytes"},
        "k": {"type": "integer", "minimum": 1, "maximum": max_k, "default": 10,
              "description": f"neighbours (1..{max_k}, CXR_API_MAX_K)"},
        "view": {**lst, "description": "views to keep, e.g. PA, AP (repeat or comma-separate)"},
        "sex": {"type": "string", "enum": list(SEX_VALUES)},
        "age_min": {"type": "number", "minimum": 0, "maximum": AGE_MAX, "description": "at most age_max"},
        "age_max": {"type": "number", "minimum": 0, "maximum": AGE_MAX, "description": "at least age_min"},
        "source": {**lst, "description": "sources to keep, e.g. covid-chestxray"},
        "finding": {**lst, "description": "keep cases with any of these findings"},
        "same_patient": {"type": "string", "enum": list(SAME_PATIENT_VALUES), "default": "exclude"},
        "attention": {"type": "boolean", "default": True, "description": "return the attention map"},
    }
