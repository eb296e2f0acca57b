"""Reader for NIH ChestX-ray14's official ``Data_Entry_2017.csv``.

Multi-label findings (``Edema|Effusion``), patient id, age, sex and view
come from the label file; images are found by name anywhere below the
dataset folder (the release spreads them over images_001/images ...
images_012/images), with one os.walk.
"""

from __future__ import annotations

import re
from pathlib import Path

from embed.datasets._common import (
    final_findings,
    read_table,
    check_image,
    clean_str,
    name_map,
    norm_finding,
    norm_sex,
    norm_view,
    parse_age,
    parse_float,
    rel_id,
)
from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize

SOURCE = "nih14"
LICENCE = "CC0 1.0 (NIH Clinical Center)"
LABEL_FILE = "Data_Entry_2017.csv"


def _canon(col: str) -> str:
    return re.sub(r"[^a-z]", "", col.lower())


# canonical column -> our name. The 2017 file and its 2020 revision differ only in
# the split size/spacing header and a trailing empty column; both land here.
_COLUMNS = {
    "imageindex": "image",
    "findinglabels": "labels",
    "followup": "follow_up",
    "patientid": "patient",
    "patientage": "age",
    "patientgender": "sex",
    "viewposition": "view",
    "originalimagewidth": "original_width",
    "height": "original_height",
    "originalimagepixelspacingx": "pixel_spacing_x",
    "y": "pixel_spacing_y",
}


def _find_label_file(root: Path) -> tuple[Path, Path]:
    if root.is_file():
        return root.parent, root
    cands = [root / LABEL_FILE] + sorted(root.glob("*/" + LABEL_FILE)) + sorted(root.glob("Data_Entry*.csv"))
    for c in cands:
        if c.is_file():
            return root, c
    raise DatasetLayoutError(
        f"nih14: no {LABEL_FILE} in {root}. Expected the official NIH ChestX-ray14 label file next to the image "
        "folders (images_001/images/...). A folder per class without the label file fits imagefolder:PATH."
    )


def _patient_id(raw: str | None) -> str | None:
    """NIH ids are integers ('61', '00000061'): strip zeros so both spellings give one pseudonym."""
    if raw is None:
        return None
    return raw.lstrip("0") or "0" if raw.isdigit() else raw


@register_dataset("nih14", "NIH ChestX-ray14: Data_Entry_2017.csv, images anywhere below the folder")
def read_nih14(root: Path, *, verify: str = "header") -> DatasetLoad:
    """Read ``Data_Entry_2017.csv``; rows whose image is not below the folder are reported and skipped."""
    root, label_file = _find_label_file(root)
    df = read_table(label_file, "nih14")
    rename = {c: _COLUMNS[_canon(c)] for c in df.columns if _canon(c) in _COLUMNS}
    df = df.rename(columns=rename)
    if not {"image", "labels"} <= set(df.columns):
        raise DatasetLayoutError(
            f"nih14: {label_file} lacks 'Image Index' and 'Finding Labels'; is it the NIH Data_Entry_2017.csv?"
        )
    files = name_map(root)
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    for i, row in enumerate(df.to_dict("records")):
        name = clean_str(row.get("image")) or ""
        ref = f"{label_file.name}:{i + 2} ({name})"
        path = files.get(name)
        if path is None:
            skipped.append(SkippedRow(ref, "image file absent"))
            continue
        reason = check_image(path, verify)
        if reason:
            skipped.append(SkippedRow(ref, reason))
            continue
        labels = [norm_finding(x) for x in str(row.get("labels") or "").split("|") if x.strip()]
        extra = {k: parse_float(row.get(k)) for k in ("follow_up", "original_width", "original_height",
                                                       "pixel_spacing_x", "pixel_spacing_y") if k in row}
        records.append(
            CaseRecord(
                case_id=rel_id(SOURCE, path, root),
                image_path=str(path.resolve()),
                source=SOURCE,
                patient=pseudonymize(SOURCE, _patient_id(clean_str(row.get("patient")))),
                view=norm_view(row.get("view")),
                sex=norm_sex(row.get("sex")),
                age=parse_age(row.get("age")),
                findings=final_findings(labels),
                licence=LICENCE,
                extra={k: v for k, v in extra.items() if v is not None},
            )
        )
    return DatasetLoad(records=records, skipped=skipped, kind="nih14", root=root)
