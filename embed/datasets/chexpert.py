"""Reader for CheXpert label CSVs (and MIMIC-CXR-JPG's chexpert file, which uses the same coding).

Labels are 1 (positive), 0 (negative), -1 (uncertain) or blank (not
mentioned). ``uncertain`` decides what -1 means: "ones" (positive), "zeros"
(negative) or "ignore" (neither; the default). Whatever the policy, the
uncertain labels are listed in ``extra["uncertain"]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from embed.datasets._common import (
    final_findings,
    final_findings,
    read_table,
    check_image,
    clean_str,
    norm_finding,
    norm_sex,
    norm_view,
    parse_age,
    parse_float,
    rel_id,
    unique,
)
from embed.datasets.base import CaseRecord, DatasetLoad, SkippedRow, register_dataset
from embed.errors import DatasetError, DatasetLayoutError
from embed.pseudonym import pseudonymize

UNCERTAIN_POLICIES = ("ones", "zeros", "ignore")
CHEXPERT_LICENCE = "Stanford CheXpert Dataset Research Use Agreement"
MIMIC_LICENCE = "PhysioNet Credentialed Health Data License 1.5.0"
_META_COLUMNS = {"path", "sex", "age", "frontal/lateral", "ap/pa", "subject_id", "study_id", "dicom_id",
                 "viewposition", "split"}
_PATIENT = re.compile(r"(patient\d+)")
_STUDY = re.compile(r"study(\d+)")
MIMIC_METADATA = "mimic-cxr-2.0.0-metadata.csv"


def _label_files(root: Path) -> tuple[Path, list[Path]]:
    if root.is_file():
        return root.parent, [root]
    files = [root / n for n in ("train.csv", "valid.csv", "test.csv") if (root / n).is_file()]
    files += sorted(root.glob("*chexpert*.csv")) + sorted(root.glob("*chexpert*.csv.gz"))
    if not files:
        raise DatasetLayoutError(
            f"chexpert: no train.csv / valid.csv (CheXpert) or *-chexpert.csv (MIMIC-CXR-JPG) in {root}. "
            "Name the dataset folder (CheXpert-v1.0-small) or the label CSV itself."
        )
    return root, files


def _resolver(base: Path):
    """Map the Path column to a file; CheXpert paths start with the dataset folder (relative to its parent)."""
    cache: dict[str, int] = {}

    def candidates(p: str) -> list[Path]:
        parts = Path(p).parts
        return [base.parent / p, base / p, base.joinpath(*parts[1:]) if len(parts) > 1 else base / p]

    def resolve(p: str) -> Path:
        cands = candidates(p)
        if "conv" in cache:
            first = cands[cache["conv"]]
            if first.exists():
                return first
        for i, c in enumerate(cands):
            if c.exists():
                cache["conv"] = i
                return c
        return cands[cache.get("conv", 0)]

    return resolve


def _mimic_paths(base: Path, df: pd.DataFrame) -> pd.DataFrame:
    """MIMIC's chexpert file labels studies: join its metadata file to get one row per image."""
    meta = next((p for p in (base / MIMIC_METADATA, base / (MIMIC_METADATA + ".gz")) if p.is_file()), None)
    if meta is None:
        raise DatasetLayoutError(
            f"chexpert: a MIMIC-CXR-JPG label file needs {MIMIC_METADATA} next to it in {base} (one row per image)"
        )
    m = read_table(meta, "chexpert")[["dicom_id", "subject_id", "study_id", "ViewPosition"]]
    df = m.merge(df, on=["subject_id", "study_id"], how="inner")
    df["Path"] = [f"files/p{s[:2]}/p{s}/s{st}/{d}.jpg" for s, st, d in zip(df.subject_id, df.study_id, df.dicom_id)]
    return df


def _value(v: str) -> float | None:
    f = parse_float(v)
    return None if f is None else f


@register_dataset("chexpert", "CheXpert / MIMIC-CXR-JPG label CSVs (1, 0, -1 uncertain, blank)")
def read_chexpert(root: Path, *, uncertain: str = "ignore", verify: str = "header") -> DatasetLoad:
    """Read CheXpert-style label CSVs; ``uncertain`` = ones | zeros | ignore says what -1 means."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise DatasetError(f"uncertain={uncertain!r}: use one of {', '.join(UNCERTAIN_POLICIES)}")
    base, files = _label_files(root)
    resolve = _resolver(base)
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    for label_file in files:
        df = read_table(label_file, "chexpert")
        mimic = "Path" not in df.columns and {"subject_id", "study_id"} <= set(df.columns)
        if mimic:
            df = _mimic_paths(base, df)
        if "Path" not in df.columns:
            raise DatasetLayoutError(f"chexpert: {label_file} has no Path column (and is not MIMIC's chexpert file)")
        source = "mimic-cxr" if mimic else "chexpert"
        labels = [c for c in df.columns if c.lower() not in _META_COLUMNS]
        for i, row in enumerate(df.to_dict("records")):
            rel = row["Path"]
            ref = f"{label_file.name}:{i + 2} ({rel})"
            path = resolve(rel)
            reason = check_image(path, verify)
            if reason:
                skipped.append(SkippedRow(ref, reason))
                continue
            pos, neg, unc = [], [], []
            for col in labels:
                v = _value(row.get(col))
                if v is None:
                    continue
                name = norm_finding(col)
                if v == 1:
                    pos.append(name)
                elif v == 0:
                    neg.append(name)
                elif v == -1:
                    unc.append(name)
                    if uncertain == "ones":
                        pos.append(name)
                    elif uncertain == "zeros":
                        neg.append(name)
            if mimic:
                raw_patient, view = clean_str(row.get("subject_id")), norm_view(row.get("ViewPosition"))
                extra: dict = {"study": clean_str(row.get("study_id"))}
            else:
                m = _PATIENT.search(rel)
                raw_patient = m.group(1) if m else None
                fl = clean_str(row.get("Frontal/Lateral"))
                view = "LATERAL" if fl and fl.lower() == "lateral" else norm_view(row.get("AP/PA"))
                st = _STUDY.search(rel)
                extra = {"frontal_lateral": fl, "study": int(st.group(1)) if st else None}
                parts = Path(rel).parts
                extra["split"] = next((p for p in parts if p in ("train", "valid", "test")), None)
            age = parse_age(row.get("Age"))
            extra.update(negative=unique(neg), uncertain=unique(unc))
            records.append(
                CaseRecord(
                    case_id=rel_id(source, path, base),
                    image_path=str(path.resolve()),
                    source=source,
                    patient=pseudonymize(source, raw_patient),
                    view=view,
                    sex=norm_sex(row.get("Sex")),
                    age=age if age else None,  # CheXpert writes 0 for unknown age
                    findings=final_findings(pos),  # "ones" can contradict No Finding
                    licence=MIMIC_LICENCE if mimic else CHEXPERT_LICENCE,
                    extra={k: v for k, v in extra.items() if v is not None},
                )
            )
    return DatasetLoad(records=records, skipped=skipped, kind="chexpert", root=base)
