"""Reader for VinDr-CXR's annotation CSV (``train.csv``: one row per radiologist box).

Rows are collapsed to one case per ``image_id`` with the union of the
readers' labels ("No finding" only where no reader marked anything). Boxes
go to ``extra["boxes"]`` and the number of readers per label to
``extra["readers_per_finding"]``; the radiologist ids are dropped. VinDr has
no patient ids, so ``patient`` is None. Sex, age and view come from the
DICOM header (through embed.deid) where the image is a DICOM file.
"""

from __future__ import annotations

from pathlib import Path

from embed.datasets._common import (
    NO_FINDING,
    check_image,
    clean_str,
    name_map,
    norm_finding,
    parse_float,
    read_table,
    rel_id,
)
from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.errors import DatasetLayoutError

SOURCE = "vindr-cxr"
LICENCE = "PhysioNet Credentialed Health Data License 1.5.0"


def _find_csv(root: Path) -> tuple[Path, list[Path]]:
    if root.is_file():
        return root.parent, [root]
    found = []
    for c in sorted(root.glob("*.csv")) + sorted(root.glob("annotations/*.csv")):
        head = c.open(encoding="utf-8", errors="replace").readline()
        if "image_id" in head and "class_name" in head:
            found.append(c)
    if not found:
        raise DatasetLayoutError(
            f"vindr: no VinDr-CXR annotation CSV (image_id, class_name, rad_id, x_min ...) in {root}"
        )
    return root, found


def _dicom_meta(path: Path) -> dict:
    try:
        import pydicom

        from embed.deid import deidentify_dataset

        with open(path, "rb") as fh:
            head = fh.read(132)
        from embed.datasets._common import sniff

        if sniff(head) != "dicom":
            return {}
        return deidentify_dataset(pydicom.dcmread(path, stop_before_pixels=True, force=True))
    except Exception:  # noqa: BLE001 - tags are a bonus; the image check decides usability
        return {}


@register_dataset("vindr", "VinDr-CXR annotation CSV (one row per box), one case per image_id")
def read_vindr(root: Path, *, verify: str = "header") -> DatasetLoad:
    """Read VinDr-CXR annotations; images are found by ``image_id`` (any extension) below the folder."""
    root, csvs = _find_csv(root)
    files = name_map(root, key="stem")
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    for label_file in csvs:
        df = read_table(label_file, "vindr")
        for image_id, group in df.groupby("image_id", sort=False):
            ref = f"{label_file.name} ({image_id})"
            path = files.get(str(image_id))
            reason = check_image(path, verify) if path is not None else "image file absent"
            if reason:
                skipped.append(SkippedRow(ref, reason))
                continue
            readers: dict[str, set] = {}
            boxes = []
            for i, r in enumerate(group.to_dict("records")):
                name = norm_finding(r["class_name"])
                readers.setdefault(name, set()).add(clean_str(r.get("rad_id")) or f"row{i}")
                coords = [parse_float(r.get(k)) for k in ("x_min", "y_min", "x_max", "y_max")]
                if name != NO_FINDING and all(c is not None for c in coords):
                    boxes.append({"finding": name, "box": coords})
            findings = [f for f in readers if f != NO_FINDING] or ([NO_FINDING] if NO_FINDING in readers else [])
            meta = _dicom_meta(path)
            extra = {
                "readers_per_finding": {f: len(v) for f, v in readers.items()},
                "boxes": boxes,
                "split": label_file.stem.split("_")[0],
            }
            extra.update({k: meta[k] for k in ("modality", "photometric", "rows", "columns") if k in meta})
            records.append(
                CaseRecord(
                    case_id=rel_id(SOURCE, path, root),
                    image_path=str(path.resolve()),
                    source=SOURCE,
                    patient=None,
                    view=meta.get("view"),
                    sex=meta.get("sex"),
                    age=meta.get("age"),
                    findings=findings,
                    licence=LICENCE,
                    extra=extra,
                )
            )
    return DatasetLoad(records=records, skipped=skipped, kind="vindr", root=root)
