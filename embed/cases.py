"""The one case schema: the fields a case carries through every layer, declared once.

:class:`CaseFields` is the base model; the dataset record
(:class:`embed.datasets.base.CaseRecord`), the stored row
(:class:`index.store.StoredCase`, its SQL columns and its ``SELECT`` list), the API's case
(:class:`index.schemas.CaseRow`, served by ``search_api``) and the columns of the
``cxr embed`` features parquet (:func:`features_columns`) all derive from it, so adding a
field is one edit here. Each derived form adds only what is its own: a record its
``case_id`` and image path, a stored row its id, content hash and image location, an API
case its id and hash (never the image location).

A field marked ``features=False`` (``licence``, ``extra``) is kept in records, the store
and the API but not written to the features parquet, whose columns are a published
contract (``tests/test_case_schema.py`` pins them).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

#: Outcomes a source may record (``prognosis`` keys); the parquet has one bool column per name.
PROGNOSIS_FIELDS: tuple[str, ...] = (
    "survival",
    "intubated",
    "intubation_present",
    "went_icu",
    "in_icu",
    "needed_supplemental_O2",
    "extubated",
)

_NOT_IN_FEATURES = {"features": False}


class CaseFields(BaseModel):
    """What every layer knows of a case: pseudonymous, de-identified, normalised metadata."""

    source: str
    patient: str | None = None  # pseudonym from embed.pseudonym (never the raw id)
    findings: list[str] = Field(default_factory=list)  # multi-label, source vocabulary
    prognosis: dict[str, bool | None] = Field(default_factory=dict)  # keys from PROGNOSIS_FIELDS
    view: str | None = None  # normalised: "PA", "AP", "AP Supine", "LATERAL", ...
    sex: str | None = None  # "M" | "F"
    age: float | None = None  # years
    day_offset: float | None = None  # days after the patient's first image
    licence: str | None = Field(default=None, json_schema_extra=_NOT_IN_FEATURES)
    extra: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_NOT_IN_FEATURES)

    def case_fields(self) -> dict[str, Any]:
        """The shared fields only (lists and dicts copied): what one form hands to another."""
        out: dict[str, Any] = {}
        for name in CaseFields.model_fields:
            value = getattr(self, name)
            out[name] = type(value)(value) if isinstance(value, (list, dict)) else value
        return out


def field_kind(annotation: Any) -> str:
    """``"str"``, ``"float"``, ``"bool"``, ``"int"``, ``"list"`` or ``"dict"`` of a field's type
    (``X | None`` counts as ``X``): what the store and the parquet map it to."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return field_kind(args[0])
    if origin in (list, dict):
        return origin.__name__
    if annotation in (str, float, bool, int, list, dict):
        return annotation.__name__
    raise TypeError(f"case fields must be str, float, bool, int, list or dict (optional or not), not {annotation}")


def is_required(model: type[BaseModel], name: str) -> bool:
    """True when the field has no default (its store column is NOT NULL)."""
    return model.model_fields[name].is_required()


def in_features(name: str) -> bool:
    """Whether a shared field is a column (or, for ``prognosis``, columns) of the features parquet."""
    extra = CaseFields.model_fields[name].json_schema_extra
    return not (isinstance(extra, dict) and extra.get("features") is False)


def features_columns(records: Sequence[Any]) -> dict[str, Any]:
    """The case columns of the features parquet as pyarrow arrays, in order: ``case_id``,
    ``image_path``, then the shared fields (``prognosis`` spread over one bool column per
    :data:`PROGNOSIS_FIELDS` name). ``records`` are :class:`~embed.datasets.base.CaseRecord`."""
    import pyarrow as pa

    arrow = {"str": pa.string(), "float": pa.float64(), "bool": pa.bool_(), "int": pa.int64(),
             "list": pa.list_(pa.string())}
    cols: dict[str, Any] = {
        "case_id": pa.array([r.case_id for r in records], pa.string()),
        "image_path": pa.array([r.image_path for r in records], pa.string()),
    }
    for name, info in CaseFields.model_fields.items():
        if not in_features(name):
            continue
        if name == "prognosis":
            for outcome in PROGNOSIS_FIELDS:
                cols[outcome] = pa.array([(r.prognosis or {}).get(outcome) for r in records], pa.bool_())
            continue
        kind = field_kind(info.annotation)
        values = [getattr(r, name) for r in records]
        if kind == "list":
            values = [list(v or []) for v in values]
        cols[name] = pa.array(values, arrow[kind])
    return cols
