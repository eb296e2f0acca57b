"""Patient-disjoint train/validation split, stable across runs and machines.

Each patient goes to a fold by a hash of (seed, patient pseudonym), never by image, so
all images of a patient land on one side. Records without a patient are their own
patient (keyed by case id). Stratification: patients are ordered by hash within each
class of their first image and every ``1/fraction``-th goes to validation, so each
class gets its share where it has enough patients.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Sequence


def _h(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def patient_key(record: Any) -> str:
    """The grouping key: the pseudonym, or the case id where no patient is known."""
    return f"{record.source}|{record.patient}" if record.patient else f"case|{record.case_id}"


def patient_split(
    records: Sequence[Any],
    labels: Sequence[str | None] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Indices (train, val) with no patient on both sides, stratified by class where possible."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        groups[patient_key(rec)].append(i)
    by_class: dict[str, list[str]] = defaultdict(list)
    for key, idx in groups.items():
        cls = str(labels[idx[0]]) if labels is not None else "all"
        by_class[cls].append(key)
    val_patients: set[str] = set()
    if val_fraction > 0:
        for cls, keys in by_class.items():
            keys.sort(key=lambda k: _h(seed, k))
            n_val = int(round(len(keys) * val_fraction))
            val_patients.update(keys[:n_val])
    train, val = [], []
    for key, idx in groups.items():
        (val if key in val_patients else train).extend(idx)
    return sorted(train), sorted(val)


def split_fingerprint(case_ids: Sequence[str]) -> str:
    """sha256 of the sorted case ids: lets a checkpoint prove which images were its validation set
    (``cxr evaluate --split val`` checks it)."""
    return hashlib.sha256("\n".join(sorted(case_ids)).encode()).hexdigest()
