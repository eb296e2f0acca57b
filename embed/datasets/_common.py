"""Small normalisers shared by the readers, so every source speaks one vocabulary."""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from embed.errors import DatasetError
from embed.image import read_image, sniff_format

log = logging.getLogger(__name__)

NO_FINDING = "No Finding"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dic"}
VERIFY_MODES = ("exists", "header", "decode")

_NORMAL_NAMES = {"no finding", "no findings", "nofinding", "no_finding", "no_findings", "normal", "healthy", "none"}

_VIEWS = {
    "PA": "PA",
    "POSTEROANTERIOR": "PA",
    "AP": "AP",
    "ANTEROPOSTERIOR": "AP",
    "AP SUPINE": "AP Supine",
    "AP_SUPINE": "AP Supine",
    "APS": "AP Supine",
    "AP_HORIZONTAL": "AP Supine",
    "AP HORIZONTAL": "AP Supine",
    "SUPINE": "AP Supine",
    "AP ERECT": "AP",
    "AP_ERECT": "AP",
    "L": "LATERAL",
    "LAT": "LATERAL",
    "LATERAL": "LATERAL",
    "LL": "LATERAL",
    "RL": "LATERAL",
    "LEFT LATERAL": "LATERAL",
    "RIGHT LATERAL": "LATERAL",
    "LATERALE": "LATERAL",
}


def is_blank(value: Any) -> bool:
    """True for None, NaN, empty strings and the usual placeholders ('?', 'nan', 'None')."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    s = str(value).strip()
    return s == "" or s.lower() in {"nan", "none", "?", "null", "na", "n/a", "unknown"}


def clean_str(value: Any) -> str | None:
    return None if is_blank(value) else str(value).strip()


def norm_view(value: Any) -> str | None:
    """Map the sources' view spellings onto "PA", "AP", "AP Supine", "LATERAL"; others kept upper-case."""
    s = clean_str(value)
    if s is None:
        return None
    key = re.sub(r"\s+", " ", s.upper())
    return _VIEWS.get(key, key)


def norm_sex(value: Any) -> str | None:
    s = clean_str(value)
    if s is None:
        return None
    s = s.upper()
    if s in {"M", "MALE", "MAN", "H", "HOMBRE"}:
        return "M"
    if s in {"F", "FEMALE", "WOMAN", "W", "MUJER"}:
        return "F"
    return None


def parse_float(value: Any) -> float | None:
    s = clean_str(value)
    if s is None:
        return None
    try:
        f = float(s)
    except ValueError:
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def parse_age(value: Any) -> float | None:
    """Years from 57, 57.0, '057Y' (DICOM AS), '6M', '3W', '10D'; implausible values -> None."""
    s = clean_str(value)
    if s is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([YMWD]?)", s.upper())
    if not m:
        return None
    n = float(m.group(1))
    years = {"": n, "Y": n, "M": n / 12.0, "W": n / 52.0, "D": n / 365.0}[m.group(2)]
    return years if 0 <= years <= 120 else None


def yes_no(value: Any) -> bool | None:
    """Y/N, yes/no, true/false, 1/0 -> bool; anything else ('?', 'Not visible') -> None."""
    s = clean_str(value)
    if s is None:
        return None
    s = s.lower()
    if s in {"y", "yes", "true", "1", "1.0", "t"}:
        return True
    if s in {"n", "no", "false", "0", "0.0", "f"}:
        return False
    return None


# Common labels in one spelling whatever the source's case ("PNEUMONIA", "lung_opacity", "covid").
_CANONICAL = {
    n.lower(): n
    for n in (
        "Pneumonia", "Viral Pneumonia", "Bacterial Pneumonia", "Fungal Pneumonia", "Tuberculosis",
        "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
        "Infiltration", "Mass", "Nodule", "Pleural Thickening", "Pneumothorax", "Pleural Effusion",
        "Lung Opacity", "Lung Lesion", "Enlarged Cardiomediastinum", "Fracture", "Support Devices",
        "Pleural Other", "ARDS", "SARS", "COVID-19",
    )
}
_CANONICAL.update({"covid": "COVID-19", "covid19": "COVID-19", "covid 19": "COVID-19", "sars-cov-2": "COVID-19",
                   "tb": "Tuberculosis"})


def norm_finding(name: str) -> str:
    """One label: normal spellings -> "No Finding", underscores -> spaces, common labels in one spelling."""
    s = re.sub(r"\s+", " ", str(name).replace("_", " ")).strip()
    if s.lower() in _NORMAL_NAMES:
        return NO_FINDING
    return _CANONICAL.get(s.lower(), s)


def unique(items: list[str]) -> list[str]:
    out: list[str] = []
    for x in items:
        if x and x not in out:
            out.append(x)
    return out


def final_findings(items: list[str]) -> list[str]:
    """De-duplicated, order kept; "No Finding" dropped when a pathology is also listed (devices are no pathology)."""
    out = unique(items)
    if NO_FINDING in out and set(out) - {NO_FINDING, "Support Devices"}:
        out.remove(NO_FINDING)
    return out


def sniff(head: bytes) -> str | None:
    """PNG/JPEG/DICOM by magic bytes (:func:`embed.image.sniff_format`, the reader's own test)."""
    return sniff_format(head)


def check_image(path: Path, verify: str = "header") -> str | None:
    """Return None when ``path`` is usable, else a short reason. ``verify``: exists|header|decode."""
    if verify not in VERIFY_MODES:
        raise DatasetError(f"verify={verify!r} is not one of {', '.join(VERIFY_MODES)}")
    try:
        st = path.stat()
    except OSError:
        return "image file absent"
    if not path.is_file():
        return "image path is not a file"
    if st.st_size == 0:
        return "image file empty"
    if verify == "exists":
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return "image file unreadable"
    if sniff(head) is None:
        return "not a PNG/JPEG/DICOM image"
    if verify == "decode":
        try:
            read_image(path)
        except Exception as exc:  # noqa: BLE001 - any decode failure means: skip this row
            return f"image unreadable ({type(exc).__name__})"
    return None


def walk_files(root: Path) -> list[Path]:
    """Every regular file below ``root`` (one os.walk, sorted), skipping hidden and macOS metadata folders."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(Path(dirpath) / name)
    return out


def name_map(root: Path, key: str = "name") -> dict[str, Path]:
    """File name (or stem, ``key="stem"``) -> path for every file below ``root``, with one os.walk.

    Used by label files that name images but not their folder (NIH spreads
    them over images_001 ... images_012). The first of duplicate names wins.
    """
    found: dict[str, Path] = {}
    dups = 0
    for p in walk_files(root):
        k = p.name if key == "name" else p.stem
        if k in found:
            dups += 1
            continue
        found[k] = p
    if dups:
        log.warning("%d file names occur more than once below %s; the first of each is used", dups, root)
    return found


def rel_id(source: str, path: Path, root: Path) -> str:
    """The stable case id: ``<source>/<path relative to root>`` with forward slashes."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:  # outside the root (absolute path in a manifest): keep the whole path
        rel = Path(path.resolve().as_posix().lstrip("/"))
    return f"{source}/{rel.as_posix()}"


def as_bool_opt(value: Any) -> bool:
    """Options from a spec arrive as strings: accept 1/0, true/false, yes/no."""
    if isinstance(value, bool):
        return value
    b = yes_no(value)
    if b is None:
        raise DatasetError(f"option value {value!r} is not a yes/no value: use true or false")
    return b


def read_table(path: Path, kind: str):
    """Read a label CSV as strings: UTF-8 (with or without BOM) or Latin-1, ',' ';' or tab separated.

    Every failure becomes a DatasetLayoutError naming the file, never a pandas trace.
    """
    import pandas as pd

    from embed.errors import DatasetLayoutError

    import gzip

    try:
        fh = (gzip.open(path, "rt", encoding="utf-8-sig", errors="replace") if path.suffix == ".gz"
              else open(path, encoding="utf-8-sig", errors="replace"))
        with fh:
            first = fh.readline()
    except OSError as exc:
        raise DatasetLayoutError(f"{kind}: cannot read {path}: {exc.strerror or exc}") from exc
    sep = max((",", ";", "\t"), key=first.count)
    last_exc: Exception | None = None
    for enc in ("utf-8-sig", "latin-1"):
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding=enc)
        except UnicodeDecodeError as exc:
            last_exc = exc
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise DatasetLayoutError(f"{kind}: {path} is not a readable CSV table ({exc}); check the file") from exc
    raise DatasetLayoutError(f"{kind}: {path} has an unknown text encoding ({last_exc}); save it as UTF-8")
