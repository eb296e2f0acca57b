"""Reader for the Kermany et al. paediatric pneumonia release (``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}``).

The folder says normal vs pneumonia; the file name says the cause
(``personN_bacteria_M`` / ``personN_virus_M``) and the patient
(``personN``, ``IM-XXXX``, ``NORMAL2-IM-XXXX``). The release's train/test
folders are kept in ``extra["split"]`` only: our own split is by patient.
"""

from __future__ import annotations

import re
from pathlib import Path

from embed.datasets._common import NO_FINDING, check_image, rel_id, walk_files
from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize

SOURCE = "kermany"
LICENCE = "CC BY 4.0"
SPLITS = ("train", "test", "val")
CLASSES = {"NORMAL": "normal", "PNEUMONIA": "pneumonia"}
_PATIENT = re.compile(r"^(person\d+|NORMAL2-IM-\d+|IM-\d+)(?=[-_.])", re.IGNORECASE)
_CAUSE = re.compile(r"_(bacteria|virus)_", re.IGNORECASE)


def kermany_findings(folder_class: str, file_name: str) -> list[str]:
    """NORMAL -> ["No Finding"]; bacteria -> ["Pneumonia", "Bacterial Pneumonia"]; virus -> [.., "Viral Pneumonia"]."""
    if folder_class == "normal":
        return [NO_FINDING]
    m = _CAUSE.search(file_name)
    if not m:
        return ["Pneumonia"]
    return ["Pneumonia", "Bacterial Pneumonia" if m.group(1).lower() == "bacteria" else "Viral Pneumonia"]


def kermany_patient(file_name: str) -> str | None:
    """Raw patient id from the file name, or None where the name has no known pattern."""
    m = _PATIENT.match(file_name)
    if not m:
        return None
    pid = m.group(1)
    return pid.lower() if pid.lower().startswith("person") else pid.upper()


def _find_root(root: Path) -> Path:
    """The folder that holds train/test/val; the Kaggle zip nests it as chest_xray/chest_xray."""
    for cand in (root, root / "chest_xray", root / "chest_xray" / "chest_xray"):
        if any((cand / s / c).is_dir() for s in SPLITS for c in CLASSES):
            return cand
    raise DatasetLayoutError(
        f"kermany: {root} has no train/, test/ or val/ folder with NORMAL/ and PNEUMONIA/ inside. Expected the "
        "public layout chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/*.jpeg. A plain folder per class fits "
        "imagefolder:PATH."
    )


@register_dataset("kermany", "Kermany paediatric pneumonia: chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}")
def read_kermany(root: Path, *, verify: str = "header") -> DatasetLoad:
    """Read every image of the public Kermany layout; unreadable files are reported and skipped."""
    root = _find_root(root)
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    for split in SPLITS:
        for cls_dir, cls in CLASSES.items():
            folder = root / split / cls_dir
            if not folder.is_dir():
                continue
            for path in walk_files(folder):
                ref = f"{split}/{cls_dir}/{path.name}"
                reason = check_image(path, verify)
                if reason:
                    skipped.append(SkippedRow(ref, reason))
                    continue
                raw_patient = kermany_patient(path.name)
                extra = {"split": split, "cohort": "paediatric, 1-5 years"}
                if raw_patient is None:
                    extra["patient_unknown"] = True
                records.append(
                    CaseRecord(
                        case_id=rel_id(SOURCE, path, root),
                        image_path=str(path.resolve()),
                        source=SOURCE,
                        patient=pseudonymize(SOURCE, raw_patient),
                        view="AP",  # the paper: "anterior-posterior" radiographs
                        findings=kermany_findings(cls, path.name),
                        prognosis={},
                        licence=LICENCE,
                        extra=extra,
                    )
                )
    return DatasetLoad(records=records, skipped=skipped, kind="kermany", root=root)
