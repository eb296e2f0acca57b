"""Patient-disjoint train/validation split, stable across runs and machines.

Each patient goes to a fold by a hash of (seed, patient key), never by image, so
all images of a patient land on one side. Records without a patient are their own
patient (keyed by case id). Stratification: patients are ordered by hash within each
class of their first image and every ``1/fraction``-th goes to validation, so each
class gets its share where it has enough patients.

:func:`labelled_split` is the one place the split of a run is made: ``cxr train`` uses it
to choose its validation patients and ``cxr evaluate --split val`` to find them again
from the checkpoint's recorded settings (this module sits below both).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from embed.datasets.base import CaseRecord
from embed.labels import label_of
from embed.pseudonym import split_digest

#: Defaults of a run's split (``TrainConfig`` uses them; a checkpoint without them had these).
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SEED = 0
#: How patients are keyed for the split. "source_id" (new runs): a hash of the source's own patient id,
#: the same with any CXR_PSEUDONYM_KEY, so anyone can recompute a published split; "pseudonym": the
#: keyed pseudonym, what checkpoints trained before it (the released model) used and still use.
SPLIT_SCHEMES = ("source_id", "pseudonym")
DEFAULT_SPLIT_SCHEME = "source_id"
LEGACY_SPLIT_SCHEME = "pseudonym"


def _h(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def patient_key(record: CaseRecord, scheme: str = LEGACY_SPLIT_SCHEME) -> str:
    """The grouping key: the pseudonym (or under "source_id" the keyless digest of the source's own id,
    when this process read it), or the case id where no patient is known."""
    if not record.patient:
        return f"case|{record.case_id}"
    if scheme == "source_id":
        digest = split_digest(record.patient)
        if digest is not None:
            return f"{record.source}|s_{digest}"
    elif scheme != LEGACY_SPLIT_SCHEME:
        raise ValueError(f"unknown split scheme {scheme!r}: one of {', '.join(SPLIT_SCHEMES)}")
    return f"{record.source}|{record.patient}"


def patient_split(
    records: Sequence[CaseRecord],
    labels: Sequence[str | None] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    split_scheme: str = LEGACY_SPLIT_SCHEME,
) -> tuple[list[int], list[int]]:
    """Indices (train, val) with no patient on both sides, stratified by class where possible."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        groups[patient_key(rec, split_scheme)].append(i)
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


@dataclass
class LabelledSplit:
    """The labelled records of a run (unlabelled ones left out), their class names and the split."""

    records: list[CaseRecord]
    labels: list[str]
    train: list[int]
    val: list[int]

    @property
    def val_sha256(self) -> str:
        """:func:`split_fingerprint` of the validation records."""
        return split_fingerprint([self.records[i].case_id for i in self.val])


def labelled_split(
    records: Sequence[CaseRecord],
    scheme: str,
    vocab: Sequence[str],
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    split_scheme: str = LEGACY_SPLIT_SCHEME,
) -> LabelledSplit:
    """Keep the records whose class (``embed.labels.label_of`` under ``scheme``) is in ``vocab``
    and split them by patient, stratified by that class (patients keyed by ``split_scheme``)."""
    raw = [label_of(r, scheme) for r in records]
    keep = [i for i, lab in enumerate(raw) if lab in vocab]
    kept = [records[i] for i in keep]
    labels = [str(raw[i]) for i in keep]
    train, val = patient_split(kept, labels, val_fraction, seed, split_scheme)
    return LabelledSplit(kept, labels, train, val)
