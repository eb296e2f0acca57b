"""De-identification of DICOM metadata (PS3.15 basic profile, by allow-list).

Nothing read from a DICOM header is stored, logged or returned unless it is on
the allow-list below: the basic profile removes or replaces everything that
identifies a patient (names, ids, birth date, accession number, UIDs, dates,
institution, physicians, device serial numbers, free-text descriptions).
An allow-list is safer than the profile's block-list: a private tag or a
vendor's free-text field cannot slip through.

Kept, and why it is safe:
- ``modality``, ``body_part``, ``view``, ``photometric``, ``bits_stored``,
  ``rows``, ``columns``, ``transfer_syntax``: acquisition technique, kept by
  the basic profile. Values are checked against their VR/vocabulary (short
  code strings), so no free text passes.
- ``sex`` (``M``/``F`` only) and ``age`` (years): the profile's *Retain Patient
  Characteristics* option. Ages above 89 are reported as 90 (HIPAA safe harbour).
- ``manufacturer_model``: the make of the device (e.g. "9000"), kept as
  technique, not as identity: it names a product line shared by many sites,
  and helps to explain domain shift. Device serial numbers, station names and
  institution are never kept (the *Retain Device Identity* option is not used).
- ``patient``: ``pseudonymize("dicom", PatientID)``, a keyed hash (never the id); left out
  when the id is an anonymizer's placeholder ("ANONYMOUS", "XX", "0", ...), which would
  otherwise merge unrelated images into one patient.
- ``day_offset``: the study date as days after a caller-given reference date
  (e.g. the patient's first study), only when one is given; otherwise dates
  are dropped entirely (the profile's *Retain Longitudinal Temporal
  Information with Modified Dates* option).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from embed.pseudonym import pseudonymize

log = logging.getLogger(__name__)


def _quiet_pydicom_validation() -> None:
    """pydicom's read-time validation logs invalid values *verbatim* (an odd PatientName or
    PatientAge would land in the logs). Values are checked here, by the allow-list, instead."""
    try:
        from pydicom import config

        config.settings.reading_validation_mode = config.IGNORE
    except (ImportError, AttributeError):  # pragma: no cover - older pydicom
        pass


_quiet_pydicom_validation()

_CODE_RE = re.compile(r"^[A-Z0-9 _]{1,16}$")  # DICOM CS value
_UID_RE = re.compile(r"^[0-9.]{1,64}$")
_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_AGE_CAP = 90.0

# Transfer syntaxes are standard UIDs (not instance UIDs): safe to report by name.
_VIEW_MAP = {
    "PA": "PA",
    "POSTERO_ANTERIOR": "PA",
    "AP": "AP",
    "ANTERO_POSTERIOR": "AP",
    "AP SUPINE": "AP Supine",
    "APSUPINE": "AP Supine",
    "SUPINE AP": "AP Supine",
    "LL": "LATERAL",
    "RL": "LATERAL",
    "LAT": "LATERAL",
    "LATERAL": "LATERAL",
    "L": "LATERAL",
    "LLD": "LLD",
    "RLD": "RLD",
    "RLO": "RLO",
    "LLO": "LLO",
}
_MODEL_RE = re.compile(r"^[\w .,+()/-]{1,64}$")
# Ids that anonymizers write in place of the real one: they name no patient, and pseudonymizing them
# would merge every such image into one "patient" (same-patient exclusion would then hide them all).
_PLACEHOLDER_IDS = {
    "", "0", "00000000", "-", "?", "x", "xx", "xxx", "na", "n/a", "none", "null", "nil", "unknown",
    "anon", "anonymous", "anonymized", "anonymised", "removed", "deidentified", "de-identified",
    "patient", "patientid", "test", "id",
}


def normalize_view(value: Any) -> str | None:
    """Normalise a ViewPosition-like value to ``PA``, ``AP``, ``AP Supine``, ``LATERAL`` ...; else None."""
    if value is None:
        return None
    key = str(value).strip().upper().replace("-", " ")
    if not key:
        return None
    return _VIEW_MAP.get(key) or _VIEW_MAP.get(key.replace(" ", "_"))


def parse_age(value: Any) -> float | None:
    """DICOM AS (``045Y``, ``006M``, ``010W``, ``003D``; a bare number means years) → years, capped at 90."""
    if value is None:
        return None
    m = _AGE_RE.match(str(value))
    if not m:
        return None
    n, unit = int(m.group(1)), (m.group(2) or "Y").upper()
    years = {"Y": n, "M": n / 12.0, "W": n * 7 / 365.25, "D": n / 365.25}[unit]
    return round(float(min(years, _AGE_CAP)), 3)


def parse_da(value: Any) -> dt.date | None:
    """DICOM DA ``YYYYMMDD`` (or legacy ``YYYY.MM.DD``) → date; None when absent or malformed."""
    if value is None:
        return None
    text = str(value).strip().replace(".", "")
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def study_date(ds) -> dt.date | None:
    """The acquisition day (Study, Series, Acquisition or Content Date): for in-memory offsets only, never stored."""
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        date = parse_da(_get(ds, keyword))
        if date is not None:
            return date
    return None


def _get(ds, keyword: str) -> Any:
    try:
        value = ds.get(keyword)
    except Exception:  # malformed element: treat as absent
        return None
    if value is None:
        return None
    if hasattr(value, "value") and not isinstance(value, (str, bytes)):
        value = value.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    return value


def _code(ds, keyword: str) -> str | None:
    value = _get(ds, keyword)
    if value is None:
        return None
    text = str(value).strip().upper()
    return text if _CODE_RE.match(text) else None


def _int(ds, keyword: str) -> int | None:
    value = _get(ds, keyword)
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def _transfer_syntax(ds) -> str | None:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None or not _UID_RE.match(str(uid)):
        return None
    name = getattr(uid, "name", "") or ""
    return name if name and name != str(uid) and len(name) <= 120 else str(uid)


def patient_key(ds) -> str | None:
    """The raw PatientID for in-memory grouping and pseudonyms; None for absent or placeholder ids."""
    value = _get(ds, "PatientID")
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _PLACEHOLDER_IDS else text


def deidentify_dataset(ds, *, reference_date: dt.date | None = None) -> dict:
    """The allow-listed, de-identified metadata of a DICOM data set (see the module doc)."""
    out: dict[str, Any] = {
        "modality": _code(ds, "Modality"),
        "body_part": _code(ds, "BodyPartExamined"),
        "view": normalize_view(_get(ds, "ViewPosition")),
        "sex": (_code(ds, "PatientSex") if _code(ds, "PatientSex") in ("M", "F") else None),
        "age": parse_age(_get(ds, "PatientAge")),
        "photometric": _code(ds, "PhotometricInterpretation"),
        "bits_stored": _int(ds, "BitsStored"),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "transfer_syntax": _transfer_syntax(ds),
    }
    model = _get(ds, "ManufacturerModelName")
    if model is not None and _MODEL_RE.match(str(model).strip()):
        out["manufacturer_model"] = str(model).strip()
    out["patient"] = pseudonymize("dicom", patient_key(ds))
    if reference_date is not None:
        day = study_date(ds)
        out["day_offset"] = float((day - reference_date).days) if day is not None else None
    return {k: v for k, v in out.items() if v is not None}
