"""Reader for PadChest's label CSV (``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv``).

One row per image; ``Labels`` is a Python-style list of Spanish-report
derived labels in English ("['pleural effusion', 'cardiomegaly']"). Images
are found by ``ImageID`` anywhere below the folder (the release unpacks to
numbered folders). Age is the study year minus the birth year (approximate);
``day_offset`` is days after the patient's first study. Dates, ids and the
report text are never kept.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

from embed.datasets._common import (
    final_findings,
    read_table,
    NO_FINDING,
    check_image,
    clean_str,
    name_map,
    norm_finding,
    norm_sex,
    norm_view,
    parse_float,
    rel_id,
)
from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize

SOURCE = "padchest"
LICENCE = "BIMCV-PadChest terms of use"
_ACRONYMS = {"copd", "nsg", "picc", "icd", "cabg", "ards"}
_EXCLUDE = {"exclude", "suboptimal study"}
# Technical columns worth keeping (renamed); everything else is dropped (ids, dates, birth year, report).
_KEEP = {"Modality_DICOM": "modality", "PhotometricInterpretation_DICOM": "photometric",
         "BitsStored_DICOM": "bits_stored", "Rows_DICOM": "rows", "Columns_DICOM": "columns",
         "Pediatric": "pediatric", "MethodLabel": "method_label", "ImageDir": "image_dir"}


def padchest_label(label: str) -> str:
    """'pleural effusion' -> 'Pleural Effusion', 'normal' -> 'No Finding', acronyms upper-case."""
    s = norm_finding(label)
    if s == NO_FINDING:
        return s
    return " ".join(w.upper() if w.lower() in _ACRONYMS else w[:1].upper() + w[1:] for w in s.split(" "))


def _parse_list(value: str | None) -> list[str]:
    s = clean_str(value)
    if s is None:
        return []
    try:
        parsed = ast.literal_eval(s)
    except (ValueError, SyntaxError):
        parsed = [x.strip(" '\"") for x in s.strip("[]").split(",")]
    if isinstance(parsed, str):
        parsed = [parsed]
    return [str(x).strip() for x in parsed if str(x).strip()]


def _date(value: str | None) -> dt.date | None:
    s = clean_str(value)
    try:
        return dt.datetime.strptime(s[:8], "%Y%m%d").date() if s else None
    except ValueError:
        return None


def _find_csv(root: Path) -> tuple[Path, Path]:
    if root.is_file():
        return root.parent, root
    for c in sorted(root.glob("PADCHEST*.csv")) + sorted(root.glob("*.csv")):
        head = c.open(encoding="utf-8", errors="replace").readline()
        if "ImageID" in head and "Labels" in head:
            return root, c
    raise DatasetLayoutError(
        f"padchest: no PadChest label CSV (columns ImageID, PatientID, Projection, Labels ...) in {root}"
    )


@register_dataset("padchest", "PadChest label CSV (ImageID, Projection, Labels ...), images anywhere below")
def read_padchest(root: Path, *, verify: str = "header") -> DatasetLoad:
    """Read the PadChest label CSV; rows labelled 'exclude' / 'suboptimal study' are reported and skipped."""
    root, label_file = _find_csv(root)
    df = read_table(label_file, "padchest")
    if not {"ImageID", "Labels"} <= set(df.columns):
        raise DatasetLayoutError(f"padchest: {label_file} lacks ImageID / Labels columns")
    files = name_map(root)
    rows = df.to_dict("records")
    first: dict[str, dt.date] = {}
    for r in rows:
        pid, day = clean_str(r.get("PatientID")), _date(r.get("StudyDate_DICOM"))
        if pid and day and (pid not in first or day < first[pid]):
            first[pid] = day
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    for i, row in enumerate(rows):
        name = clean_str(row.get("ImageID")) or ""
        ref = f"{label_file.name}:{i + 2} ({name})"
        labels = [x.lower() for x in _parse_list(row.get("Labels"))]
        if set(labels) & _EXCLUDE:
            skipped.append(SkippedRow(ref, "labelled exclude / suboptimal study by PadChest"))
            continue
        path = files.get(name)
        reason = check_image(path, verify) if path is not None else "image file absent"
        if reason:
            skipped.append(SkippedRow(ref, reason))
            continue
        findings = final_findings([padchest_label(x) for x in labels])
        pid, day = clean_str(row.get("PatientID")), _date(row.get("StudyDate_DICOM"))
        birth = parse_float(row.get("PatientBirth"))
        age = float(day.year - int(birth)) if day and birth and 0 <= day.year - int(birth) <= 120 else None
        extra = {new: clean_str(row.get(old)) for old, new in _KEEP.items()}
        extra["localizations"] = _parse_list(row.get("Localizations")) or None
        extra["view_dicom"] = norm_view(row.get("ViewPosition_DICOM"))
        records.append(
            CaseRecord(
                case_id=rel_id(SOURCE, path, root),
                image_path=str(path.resolve()),
                source=SOURCE,
                patient=pseudonymize(SOURCE, pid),
                day_offset=float((day - first[pid]).days) if pid in first and day else None,
                view=norm_view(row.get("Projection")) or extra["view_dicom"],
                sex=norm_sex(row.get("PatientSex_DICOM")),
                age=age,
                findings=findings,
                licence=LICENCE,
                extra={k: v for k, v in extra.items() if v is not None},
            )
        )
    return DatasetLoad(records=records, skipped=skipped, kind="padchest", root=root)
