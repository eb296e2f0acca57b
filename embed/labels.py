"""Label mapping: each source's findings -> the classes the encoder is trained on.

Sources name findings differently ("No Finding", "NORMAL", "Pneumonia/Viral/COVID-19",
"personN_bacteria", "Pneumonia|Effusion"). Training needs one class per image. The
default ``pathology`` scheme reads the findings text case-insensitively, most specific
first, into:

``covid-19`` > ``viral pneumonia`` > ``bacterial pneumonia`` > ``fungal pneumonia`` >
``pneumonia`` (cause unknown) > ``normal`` > the first other finding, lower-cased
("ards", "effusion", or an image folder's class name); findings that are missing or
"todo" give no class (the image is left out of training but can still be indexed).
Classes with fewer than ``min_class_count`` images are dropped at training time.

``source_pathology`` prefixes the source ("kermany:normal"), so that a child's normal
film and an adult's are not forced together; see docs/results.md for the comparison.
"""

from __future__ import annotations

from typing import Callable, Sequence

from embed.cases import CaseFields
from embed.errors import CXRError

_VIRAL = ("virus", "viral", "influenza", "sars", "mers", "varicella", "herpes", "rsv", "adenovirus")
_BACTERIAL = (
    "bacteria", "bacterial", "streptococcus", "klebsiella", "legionella", "mycoplasma", "e.coli",
    "e. coli", "escherichia", "chlamydophila", "staphylococcus", "nocardia",
)
_FUNGAL = ("pneumocystis", "fungal", "aspergillosis", "candida")
_NORMAL = ("no finding", "no findings", "no_finding", "no_findings", "normal", "healthy")
_UNKNOWN = ("todo", "unknown", "")

PATHOLOGY_CLASSES = (
    "normal",
    "bacterial pneumonia",
    "viral pneumonia",
    "covid-19",
    "fungal pneumonia",
    "pneumonia",
)


def pathology_class(findings: Sequence[str]) -> str | None:
    """One training class from a findings list (None: unlabelled, left out of training)."""
    items = [str(f).strip().lower() for f in findings if f is not None]
    items = [f for f in items if f not in _UNKNOWN]
    if not items:
        return None
    text = " | ".join(items)
    if "covid" in text:
        return "covid-19"
    if any(k in text for k in _VIRAL):
        return "viral pneumonia"
    if any(k in text for k in _FUNGAL):
        return "fungal pneumonia"
    if any(k in text for k in _BACTERIAL):
        return "bacterial pneumonia"
    if "pneumonia" in text:
        return "pneumonia"
    if all(f in _NORMAL for f in items):
        return "normal"
    others = [f for f in items if f not in _NORMAL]
    return others[0]


def label_of(record: CaseFields, scheme: str = "pathology") -> str | None:
    """The training class of a CaseRecord under ``scheme``."""
    fn = LABEL_SCHEMES.get(scheme)
    if fn is None:
        raise CXRError(f"unknown label scheme {scheme!r}: choose one of {', '.join(LABEL_SCHEMES)}")
    return fn(record)


def _pathology(record: CaseFields) -> str | None:
    return pathology_class(record.findings)


def _source_pathology(record: CaseFields) -> str | None:
    cls = pathology_class(record.findings)
    return None if cls is None else f"{record.source}:{cls}"


LABEL_SCHEMES: dict[str, Callable[[CaseFields], str | None]] = {
    "pathology": _pathology,
    "source_pathology": _source_pathology,
}


def build_vocab(labels: Sequence[str | None], min_count: int = 1) -> list[str]:
    """Sorted class names with at least ``min_count`` images (rarer classes are dropped)."""
    counts: dict[str, int] = {}
    for lab in labels:
        if lab is not None:
            counts[lab] = counts.get(lab, 0) + 1
    return sorted(k for k, n in counts.items() if n >= min_count)
