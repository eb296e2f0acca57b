"""Reader for a folder per class (``ROOT/<class>/<images>``), e.g. the NIH subset's ``No_findings/`` and ``Pneumonia/``.

The class folder name is the finding ("No_findings", "normal" ... become
"No Finding"). A file-name regex gives the patient (``patient_pattern``,
first group); NIH names (``00000061_012.png``) are recognised without one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from embed.datasets._common import IMAGE_SUFFIXES, check_image, norm_finding, rel_id, walk_files
from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.errors import DatasetError, DatasetLayoutError
from embed.pseudonym import pseudonymize

log = logging.getLogger(__name__)

NIH_PATTERN = r"(\d{8})_\d{3}"
# Known file-name conventions tried when no pattern is given (used if nearly every file matches).
AUTO_PATTERNS = {"NIH ChestX-ray14": NIH_PATTERN, "Kermany": r"(person\d+|NORMAL2-IM-\d+|IM-\d+)[-_]"}


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"patient_pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    if rx.groups < 1:
        raise DatasetError(f"patient_pattern {pattern!r} needs one group around the patient id, e.g. (\\d{{8}})_\\d{{3}}")
    return rx


def _auto_pattern(names: list[str]) -> str | None:
    for label, pat in AUTO_PATTERNS.items():
        rx = re.compile(pat)
        hits = sum(1 for n in names if rx.match(n))
        if names and hits >= 0.9 * len(names):
            log.info("imagefolder: file names follow the %s convention; patient ids read with %s", label, pat)
            return pat
    return None


SPLIT_NAMES = {"train", "test", "val", "valid", "validation"}
# Sub-folders of a class folder that hold derived images, not radiographs (e.g. the
# COVID-19 Radiography Database's COVID/images + COVID/masks).
MASK_FOLDERS = {"mask", "masks", "lung masks", "lung_masks", "segmentation", "segmentations"}


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != "__MACOSX")


def _class_folders(root: Path) -> list[tuple[str | None, Path]]:
    """(split or None, class folder): ROOT/<class>/ or ROOT/<split>/<class>/ when every top folder is a split."""
    top = _subdirs(root)
    if not top:
        raise DatasetLayoutError(
            f"imagefolder: {root} has no class sub-folders; expected ROOT/<class name>/<images>. "
            "A folder of DICOM files fits dicom:PATH; a CSV manifest fits csv:FILE."
        )
    if not all(d.name.lower() in SPLIT_NAMES for d in top):
        return [(None, d) for d in top]
    if {c.name for d in top for c in _subdirs(d)} <= {"NORMAL", "PNEUMONIA"}:
        raise DatasetLayoutError(
            f"imagefolder: {root} holds train/test/val folders with NORMAL/ and PNEUMONIA/ inside: that is the "
            f"Kermany layout, use kermany:{root}"
        )
    return [(d.name, c) for d in top for c in _subdirs(d)]


@register_dataset("imagefolder", "one folder per class: ROOT/<class>/<images> (or ROOT/<split>/<class>/)")
def read_imagefolder(
    root: Path, *, patient_pattern: str | None = None, name: str | None = None, verify: str = "header"
) -> DatasetLoad:
    """Read ``ROOT/<class>/...``; source is ``imagefolder:<name or folder name>``."""
    if not root.is_dir():
        raise DatasetLayoutError(f"imagefolder: {root} is not a folder; expected ROOT/<class name>/<images>")
    classes = _class_folders(root)
    source = f"imagefolder:{name or root.name}"
    files = {c: walk_files(c) for _, c in classes}
    if patient_pattern is None:
        patient_pattern = _auto_pattern(
            [p.name for fs in files.values() for p in fs if p.suffix.lower() in IMAGE_SUFFIXES]
        )
    rx = _compile(patient_pattern) if patient_pattern else None
    if rx is None:
        log.warning("imagefolder %s: no patient_pattern, so patient is unknown (patient-level splits impossible)",
                    root)
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    for split, cls_dir in classes:
        finding = norm_finding(cls_dir.name)
        for path in files[cls_dir]:
            ref = path.relative_to(root).as_posix()
            inner = {p.lower() for p in path.relative_to(cls_dir).parts[:-1]}
            if inner & MASK_FOLDERS:
                skipped.append(SkippedRow(ref, "segmentation mask, not a radiograph"))
                continue
            reason = check_image(path, verify)
            if reason:
                skipped.append(SkippedRow(ref, reason))
                continue
            raw_patient = None
            if rx is not None:
                m = rx.match(path.name)
                raw_patient = m.group(1) if m else None
            extra = {"class_folder": cls_dir.name}
            if split:
                extra["split"] = split
            records.append(
                CaseRecord(
                    case_id=rel_id(source, path, root),
                    image_path=str(path.resolve()),
                    source=source,
                    patient=pseudonymize(source, raw_patient),
                    findings=[finding],
                    extra=extra,
                )
            )
    if not records and not skipped:
        raise DatasetLayoutError(f"imagefolder: the class folders of {root} hold no files")
    return DatasetLoad(records=records, skipped=skipped, kind="imagefolder", root=root)
