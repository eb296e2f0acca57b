"""schemathesis hooks (loaded with SCHEMATHESIS_HOOKS) for the rules JSON Schema cannot state.

``age_min <= age_max`` relates two fields; ``file`` must be a decodable image, not just bytes;
``same_patient=only`` needs a query whose patient is known (an uploaded PNG has none). The schema
says each in its descriptions and the server answers 422 / 415 otherwise, so generated "valid"
requests that break them are dropped (ages, same_patient) or given a real image (file);
negative cases are left as drawn.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# 8x8 grey PNG
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000008000000080800000000e164e1570000001f49444154081d25c1b10100"
    "00008220fddcd31b02e38c33ce38e38c33ceb8019f8c04094140b31c0000000049454e44ae426082"
)
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def _ages_ordered(params: Any) -> bool:
    if not isinstance(params, dict):
        return True
    try:
        return not float(params["age_min"]) > float(params["age_max"])
    except (KeyError, TypeError, ValueError):
        return True


def _is_image(data: Any) -> bool:
    return isinstance(data, (bytes, bytearray)) and (data.startswith(_MAGIC) or data[128:132] == b"DICM")


def _negative(case: Any) -> bool:
    mode = getattr(getattr(getattr(case, "meta", None), "generation", None), "mode", None)
    return str(mode).lower().endswith("negative")


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    """Applied in every phase (coverage included), to query parameters and form bodies alike."""
    if not (_ages_ordered(case.query) and _ages_ordered(case.body)):
        return False
    return not (isinstance(case.body, dict) and case.body.get("same_patient") == "only") \
        and not (isinstance(case.body, (bytes, bytearray)) and (case.query or {}).get("same_patient") == "only")


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    """A positive upload gets a real image (the drawn ``file`` may be bytes, text or a binary wrapper)."""
    if _negative(case) or case.operation.method.upper() != "POST":
        return case
    if isinstance(case.body, dict):
        if "file" in case.body and not _is_image(case.body["file"]):
            case.body["file"] = _PNG
    elif case.body is not None and not _is_image(case.body):
        case.body = _PNG
    return case
