"""Reader for the ieee8023 COVID-19 image data collection (``metadata.csv`` + ``images/``).

The collection is the only public source with outcomes (survival,
intubation, ICU), so its prognosis columns are what similar-case search
shows. Upstream's ``finding`` moved from flat names ("COVID-19") to a
hierarchy ("Pneumonia/Viral/COVID-19"); both map to the same findings list.
"""

from __future__ import annotations

import logging
from pathlib import Path

from embed.datasets._common import (
    final_findings,
    read_table,
    as_bool_opt,
    check_image,
    clean_str,
    norm_finding,
    norm_sex,
    norm_view,
    parse_age,
    parse_float,
    rel_id,
    yes_no,
)
from embed.datasets.base import PROGNOSIS_FIELDS, CaseRecord, DatasetLoad, SkippedRow, json_safe, register_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize

log = logging.getLogger(__name__)

SOURCE = "covid-chestxray"

# Dropped: identifying or free text that names people or places (see docs/datasets.md).
DROPPED_COLUMNS = {"patientid", "date", "location", "clinical_notes", "other_notes", "license", "finding",
                   "offset", "sex", "age", "view"}
# Flat upstream names -> the hierarchy later upstream versions use.
_FLAT_TO_HIERARCHY = {
    **{k: f"Pneumonia/Viral/{k}" for k in ("COVID-19", "SARS", "MERS", "MERS-CoV", "Varicella", "Influenza",
                                          "Herpes")},
    **{k: f"Pneumonia/Bacterial/{k}" for k in ("Streptococcus", "Klebsiella", "Legionella", "Mycoplasma", "E.Coli",
                                              "Chlamydophila", "Nocardia", "Staphylococcus",
                                              "Staphylococcus MRSA", "Tuberculosis")},
    **{k: f"Pneumonia/Fungal/{k}" for k in ("Pneumocystis", "Aspergillosis", "Histoplasmosis")},
    "Lipoid": "Pneumonia/Lipoid",
    "Aspiration": "Pneumonia/Aspiration",
    "Viral": "Pneumonia/Viral",
    "Bacterial": "Pneumonia/Bacterial",
    "Fungal": "Pneumonia/Fungal",
}
# Intermediate hierarchy levels that qualify their parent: Pneumonia/Viral -> "Viral Pneumonia".
_QUALIFIERS = {"Viral", "Bacterial", "Fungal", "Lipoid", "Aspiration"}


def _finding_parents() -> dict[str, str]:
    """child -> parent finding name, in the names parse_finding emits ("COVID-19" -> "Viral Pneumonia")."""
    out: dict[str, str] = {}
    for path in _FLAT_TO_HIERARCHY.values():
        segs = path.split("/")
        names = [norm_finding(segs[0])] + [f"{s} {segs[0]}" if s in _QUALIFIERS else norm_finding(s) for s in segs[1:]]
        for child, parent in zip(names[1:], names[:-1]):
            out.setdefault(child, parent)
    return out


#: The finding hierarchy of this source (a COVID-19 film is also viral pneumonia and pneumonia):
#: displays show a finding once, under its parent, instead of three equal shares.
FINDING_PARENTS: dict[str, str] = _finding_parents()


def parse_finding(raw: str | None) -> tuple[list[str], bool]:
    """``finding`` -> (findings list, todo flag).

    "Pneumonia/Viral/COVID-19" and the flat "COVID-19" both give
    ["Pneumonia", "Viral Pneumonia", "COVID-19"] (the same names the Kermany
    reader uses); "COVID-19, ARDS" gives the union; "todo" gives ([], True).
    """
    s = clean_str(raw)
    if s is None:
        return [], False
    out: list[str] = []
    todo = False
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() == "todo":
            todo = True
            continue
        if "/" not in part:
            part = _FLAT_TO_HIERARCHY.get(part, part)
        segs = [x.strip() for x in part.split("/") if x.strip()]
        for i, seg in enumerate(segs):
            if i > 0 and seg in _QUALIFIERS:
                out.append(f"{seg} {segs[0]}")
            else:
                out.append(norm_finding(seg))
    return final_findings(out), todo


def _find_metadata(root: Path) -> tuple[Path, Path]:
    if root.is_file():
        return root.parent, root
    for cand in (root / "metadata.csv", root / "covid-chestxray-dataset" / "metadata.csv"):
        if cand.is_file():
            return cand.parent, cand
    raise DatasetLayoutError(
        f"covid-chestxray: no metadata.csv in {root}. Expected the ieee8023 layout "
        "(metadata.csv with columns patientid, finding, view, modality, folder, filename ... and an images/ "
        "folder). A folder of class sub-folders fits imagefolder:PATH; a CSV manifest fits csv:FILE."
    )


@register_dataset("covid-chestxray", "ieee8023 COVID-19 image data collection (metadata.csv + images/)")
def read_covid_chestxray(root: Path, *, include_ct: bool = False, verify: str = "header") -> DatasetLoad:
    """Read ``metadata.csv``: X-ray rows by default, CT rows skipped (``include_ct`` keeps them)."""
    include_ct = as_bool_opt(include_ct)
    root, meta = _find_metadata(root)
    df = read_table(meta, "covid-chestxray")
    missing = {"patientid", "finding", "filename"} - set(df.columns)
    if missing:
        raise DatasetLayoutError(
            f"covid-chestxray: {meta} lacks the columns {', '.join(sorted(missing))}; "
            "is it the ieee8023 metadata.csv? For your own CSV use csv:FILE (see docs/datasets.md)"
        )
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    seen: set[str] = set()
    for i, row in enumerate(df.to_dict("records")):
        fname = clean_str(row.get("filename")) or ""
        ref = f"{meta.name}:{i + 2} ({fname})"
        modality = clean_str(row.get("modality")) or ""
        if modality.upper() == "CT" and not include_ct:
            skipped.append(SkippedRow(ref, "CT row (X-ray only; pass include_ct=true to keep)"))
            continue
        folder = clean_str(row.get("folder")) or "images"
        path = root / folder / fname
        if not path.exists() and (root / "images" / fname).exists():
            path = root / "images" / fname
        reason = check_image(path, verify) if fname else "no file name in the row"
        if reason:
            skipped.append(SkippedRow(ref, reason, str(path.relative_to(root)) if fname else ""))
            continue
        case_id = rel_id(SOURCE, path, root)
        if case_id in seen:
            skipped.append(SkippedRow(ref, "duplicate row for the same image"))
            continue
        seen.add(case_id)
        findings, todo = parse_finding(row.get("finding"))
        prognosis: dict[str, bool | None] = {}
        extra: dict = {}
        for f in PROGNOSIS_FIELDS:
            if f in row:
                prognosis[f] = yes_no(row[f])
                raw = clean_str(row[f])
                if prognosis[f] is None and raw is not None:
                    extra[f"{f}_raw"] = raw  # e.g. "Not visible", "Would have been stated"
        for k, v in row.items():
            if k in DROPPED_COLUMNS or k in PROGNOSIS_FIELDS or k.startswith("Unnamed") or not k.strip():
                continue
            num = parse_float(v)
            extra[k] = num if num is not None and k not in {"filename", "folder", "doi", "url"} else clean_str(v)
        extra["finding_raw"] = clean_str(row.get("finding"))
        if todo:
            extra["finding_todo"] = True
        records.append(
            CaseRecord(
                case_id=case_id,
                image_path=str(path.resolve()),
                source=SOURCE,
                patient=pseudonymize(SOURCE, clean_str(row.get("patientid"))),
                day_offset=parse_float(row.get("offset")),
                view=norm_view(row.get("view")),
                sex=norm_sex(row.get("sex")),
                age=parse_age(row.get("age")),
                findings=findings,
                prognosis=prognosis,
                licence=clean_str(row.get("license")),
                extra=json_safe({k: v for k, v in extra.items() if v is not None}),
            )
        )
    return DatasetLoad(records=records, skipped=skipped, kind="covid-chestxray", root=root)
