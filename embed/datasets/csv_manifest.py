"""Reader for a generic CSV manifest: the way to bring any collection (columns in docs/datasets.md).

Required: ``path`` (relative to the CSV's folder, or absolute). Optional:
``patient_id``, ``findings`` (``|``-separated), ``view``, ``sex``, ``age``,
``day_offset``, ``licence``, and any of PROGNOSIS_FIELDS. Other columns go to
``extra``, except those whose names suggest identifying data (names, dates,
ids, institution ...), which are dropped and logged.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from embed.datasets._common import (
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
    yes_no,
)
from embed.datasets.base import PROGNOSIS_FIELDS, CaseRecord, DatasetLoad, SkippedRow, json_safe, register_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize

log = logging.getLogger(__name__)

# canonical column -> accepted spellings (compared lower-case, spaces/dashes as underscores)
ALIASES = {
    "path": ("path", "image", "image_path", "file", "filename", "file_name"),
    "patient_id": ("patient_id", "patient", "patientid", "subject_id"),
    "findings": ("findings", "finding", "labels", "label"),
    "view": ("view", "view_position", "viewposition", "projection"),
    "sex": ("sex", "gender", "patient_sex"),
    "age": ("age", "patient_age", "age_years"),
    "day_offset": ("day_offset", "offset", "days", "day"),
    "licence": ("licence", "license"),
}
# Column names that suggest identifying data: dropped, never copied to extra.
IDENTIFYING = re.compile(
    r"name|birth|dob|accession|institution|hospital|physician|doctor|referring|address|phone|email|mrn|ssn|"
    r"location|city|zip|postcode|date|time|_id$|^id$|uid|notes?$|report",
    re.IGNORECASE,
)


def _canon(col: str) -> str:
    return re.sub(r"[\s\-]+", "_", col.strip().lower())


def _find_manifest(root: Path) -> Path:
    if root.is_file():
        return root
    csvs = sorted(root.glob("*.csv"))
    named = [c for c in csvs if c.stem.lower() in ("manifest", "cases", "labels", "metadata")]
    if len(named) == 1 or len(csvs) == 1:
        return (named or csvs)[0]
    raise DatasetLayoutError(
        f"csv: name the manifest file itself (found {len(csvs)} CSV files in {root}); "
        "it needs a 'path' column, see docs/datasets.md"
    )


@register_dataset("csv", "a generic CSV manifest: path, patient_id, findings (A|B), view, sex, age, ...")
def read_csv_manifest(root: Path, *, name: str | None = None, verify: str = "header") -> DatasetLoad:
    """Read a manifest CSV; ``name`` makes the source ``csv:<name>`` (default ``csv``)."""
    manifest = _find_manifest(root)
    base = manifest.parent
    df = read_table(manifest, "csv")
    cols = {_canon(c): c for c in df.columns}
    mapping: dict[str, str] = {}
    for key, spellings in ALIASES.items():
        hit = next((cols[s] for s in spellings if s in cols), None)
        if hit is not None:
            mapping[key] = hit
    if "path" not in mapping:
        raise DatasetLayoutError(
            f"csv: {manifest} has no path column (columns: {', '.join(df.columns)}). A manifest needs 'path' "
            "(image file, relative to the CSV's folder) and may have patient_id, findings, view, sex, age, "
            "day_offset, licence and prognosis columns; see docs/datasets.md"
        )
    prog_cols = {f: cols[_canon(f)] for f in PROGNOSIS_FIELDS if _canon(f) in cols}
    used = set(mapping.values()) | set(prog_cols.values())
    dropped = [c for c in df.columns if c not in used and IDENTIFYING.search(c)]
    if dropped:
        log.info("csv: columns not kept (they may identify patients): %s", ", ".join(dropped))
    extra_cols = [c for c in df.columns if c not in used and c not in dropped and c.strip()]
    source = f"csv:{name}" if name else "csv"
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    seen: set[str] = set()
    for i, row in enumerate(df.to_dict("records")):
        rel = clean_str(row[mapping["path"]])
        ref = f"{manifest.name}:{i + 2}" + (f" ({rel})" if rel else "")
        if rel is None:
            skipped.append(SkippedRow(ref, "no path in the row"))
            continue
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        reason = check_image(path, verify)
        if reason:
            skipped.append(SkippedRow(ref, reason))
            continue
        case_id = rel_id(source, path, base)
        if case_id in seen:
            skipped.append(SkippedRow(ref, "duplicate row for the same image"))
            continue
        seen.add(case_id)
        get = lambda key: row.get(mapping[key]) if key in mapping else None  # noqa: E731
        findings = [norm_finding(f) for f in str(get("findings") or "").split("|") if clean_str(f)]
        extra = {}
        for c in extra_cols:
            v = clean_str(row[c])
            if v is not None:
                num = parse_float(v)
                extra[c] = num if num is not None else v
        records.append(
            CaseRecord(
                case_id=case_id,
                image_path=str(path.resolve()),
                source=source,
                patient=pseudonymize(source, clean_str(get("patient_id"))),
                day_offset=parse_float(get("day_offset")),
                view=norm_view(get("view")),
                sex=norm_sex(get("sex")),
                age=parse_age(get("age")),
                findings=final_findings(findings),
                prognosis={f: yes_no(row[c]) for f, c in prog_cols.items()},
                licence=clean_str(get("licence")),
                extra=json_safe(extra),
            )
        )
    return DatasetLoad(records=records, skipped=skipped, kind="csv", root=base)
