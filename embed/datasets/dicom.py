"""Reader for a folder tree of DICOM files (recognised by content, whatever their names).

Metadata comes only through :func:`embed.deid.deidentify_dataset` (an
allow-list: no names, ids, dates, institution). ``day_offset`` is the study
date in days after the same patient's first study in the tree; the dates
themselves are never kept. Findings are empty: DICOM carries no labels.
"""

from __future__ import annotations

import logging
from pathlib import Path

from embed.datasets._common import check_image, rel_id, sniff, walk_files
from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.errors import DatasetLayoutError, require

log = logging.getLogger(__name__)

SOURCE = "dicom"
# Cross-sectional and other non-radiograph modalities: not chest X-rays.
NOT_RADIOGRAPHS = {"CT", "MR", "US", "NM", "PT", "SR", "PR", "KO", "SEG", "RTSTRUCT", "RTPLAN", "ECG", "XA"}
_DIRECTORY_SOP = "1.2.840.10008.1.3.10"


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)
    except OSError:
        return b""


@register_dataset("dicom", "a folder tree of DICOM files (found by content); metadata de-identified")
def read_dicom_folder(root: Path, *, verify: str = "header") -> DatasetLoad:
    """Read every DICOM file below ``root``; non-DICOM files and non-radiograph modalities are reported."""
    pydicom = require("pydicom", "pip install pydicom")
    from embed.deid import deidentify_dataset, patient_key, study_date

    files = [root] if root.is_file() else walk_files(root)
    base = root.parent if root.is_file() else root
    headers = []
    skipped: list[SkippedRow] = []
    for path in files:
        ref = path.relative_to(base).as_posix()
        if path.name.upper() == "DICOMDIR":
            skipped.append(SkippedRow(ref, "DICOMDIR (an index, not an image)"))
            continue
        if sniff(_head(path)) != "dicom":
            skipped.append(SkippedRow(ref, "not a DICOM file"))
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as exc:  # noqa: BLE001 - any parse failure: report and go on
            skipped.append(SkippedRow(ref, "DICOM header unreadable", type(exc).__name__))
            continue
        if str(ds.get("SOPClassUID", "")) == _DIRECTORY_SOP:
            skipped.append(SkippedRow(ref, "DICOMDIR (an index, not an image)"))
            continue
        modality = str(ds.get("Modality", "") or "").upper()
        if modality in NOT_RADIOGRAPHS:
            skipped.append(SkippedRow(ref, f"not a radiograph (modality {modality})"))
            continue
        reason = check_image(path, verify) if verify == "decode" else None
        if reason:
            skipped.append(SkippedRow(ref, reason))
            continue
        headers.append((path, ds))
    if not headers and not skipped:
        raise DatasetLayoutError(f"dicom: {root} holds no files; expected a folder tree of DICOM files")
    # The raw PatientID and dates stay in memory only, to compute offsets from each patient's first study.
    first: dict[str, object] = {}
    for _, ds in headers:
        pid, day = patient_key(ds), study_date(ds)
        if pid and day is not None and (pid not in first or day < first[pid]):
            first[pid] = day
    records: list[CaseRecord] = []
    for path, ds in headers:
        pid = patient_key(ds)
        meta = deidentify_dataset(ds, reference_date=first.get(pid) if pid else None)
        extra = {k: v for k, v in meta.items() if k not in {"patient", "view", "sex", "age", "day_offset"}}
        records.append(
            CaseRecord(
                case_id=rel_id(SOURCE, path, base),
                image_path=str(path.resolve()),
                source=SOURCE,
                patient=meta.get("patient"),
                day_offset=meta.get("day_offset"),
                view=meta.get("view"),
                sex=meta.get("sex"),
                age=meta.get("age"),
                findings=[],
                licence=None,
                extra=extra,
            )
        )
    if not records:
        log.warning("dicom: no usable DICOM image below %s", root)
    return DatasetLoad(records=records, skipped=skipped, kind="dicom", root=base)
