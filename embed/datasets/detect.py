"""Guess which reader fits a path, so a layout error can say which kind to use instead."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

_SPLITS = ("train", "test", "val")


def _csv_header(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().lower()
    except OSError:
        return ""


def guess_kind(path: Path) -> str | None:
    """Best guess of the dataset kind for ``path`` from cheap checks (file names, CSV headers); None if unsure."""
    path = Path(path)
    if path.is_file():
        head = _csv_header(path) if path.suffix.lower() == ".csv" else ""
        return _kind_from_header(head)
    if not path.is_dir():
        return None
    if (path / "metadata.csv").is_file() and "patientid" in _csv_header(path / "metadata.csv"):
        return "covid-chestxray"
    if list(path.glob("Data_Entry*.csv")):
        return "nih14"
    for base in (path, path / "chest_xray"):
        if any((base / s / "NORMAL").is_dir() or (base / s / "PNEUMONIA").is_dir() for s in _SPLITS):
            return "kermany"
    for csv in sorted(path.glob("*.csv"))[:5]:
        kind = _kind_from_header(_csv_header(csv))
        if kind:
            return kind
    subdirs = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")]
    from embed.datasets._common import sniff

    files = list(islice((f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")), 20))
    heads = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                heads.append(sniff(fh.read(132)))
        except OSError:
            continue
    if heads and heads.count("dicom") >= len(heads) // 2 + 1:
        return "dicom"
    if subdirs and any(h in ("png", "jpeg") for h in heads):
        return "imagefolder"
    return None


def _kind_from_header(head: str) -> str | None:
    if not head:
        return None
    if "patientid" in head and "finding" in head and "filename" in head:
        return "covid-chestxray"
    if "image index" in head and "finding labels" in head:
        return "nih14"
    if (head.startswith("path,") or ",path," in head) and ("frontal/lateral" in head or "no finding" in head):
        return "chexpert"
    if "imageid" in head and "labels" in head and "projection" in head:
        return "padchest"
    if "image_id" in head and "class_name" in head:
        return "vindr"
    if "path" in head:
        return "csv"
    return None
