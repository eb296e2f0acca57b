"""What counts as a record's class for evaluation, and the per-source binary tasks.

* **Retrieval class** (P@k, MAP@R): the checkpoint's own label mapping,
  ``embed.labels.label_of(record, scheme)`` looked up in the checkpoint's class list;
  ``-1`` (not scored) where it gives no class or a class the model was not trained on.
* **Vote truth** (multi-label): every finding of the record is mapped on its own, plus
  the record's class, so NIH ``Atelectasis|Pneumonia`` is positive for both classes and
  the hierarchical ``Pneumonia|Viral Pneumonia|COVID-19`` of covid-chestxray for
  "pneumonia", "viral pneumonia" and "covid-19" (the per-class AUC of "pneumonia" thus
  means *any* pneumonia versus the rest).
* **Tasks** the issue names, each scored on one source's queries (neighbours come from
  every reference): Kermany pneumonia vs normal, NIH pneumonia vs no finding, and
  COVID-19 vs the other labelled findings inside covid-chestxray. The task score is the
  kNN vote for the positive concept (a neighbour votes if it is positive, whatever its source).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from embed.datasets.base import CaseRecord
from embed.labels import label_of, pathology_class

PNEUMONIA_CLASSES = frozenset({"pneumonia", "bacterial pneumonia", "viral pneumonia", "fungal pneumonia", "covid-19"})


def _cls(rec: CaseRecord) -> str | None:
    return pathology_class(rec.findings or [])


def is_pneumonia(rec: CaseRecord) -> bool:
    return _cls(rec) in PNEUMONIA_CLASSES


def is_normal(rec: CaseRecord) -> bool:
    return _cls(rec) == "normal"


def is_covid(rec: CaseRecord) -> bool:
    return _cls(rec) == "covid-19"


def is_labelled(rec: CaseRecord) -> bool:
    return _cls(rec) is not None


@dataclass(frozen=True)
class Task:
    """A binary task on the queries of one source."""

    name: str
    title: str
    source: str
    positive: Callable[[CaseRecord], bool]
    negative: Callable[[CaseRecord], bool]


TASKS: tuple[Task, ...] = (
    Task("kermany_pneumonia_vs_normal", "Kermany: pneumonia vs normal", "kermany", is_pneumonia, is_normal),
    Task("nih14_pneumonia_vs_no_finding", "NIH: pneumonia vs no finding", "nih14", is_pneumonia, is_normal),
    Task(
        "covid_vs_other_findings", "covid-chestxray: COVID-19 vs other findings", "covid-chestxray",
        is_covid, lambda r: is_labelled(r) and not is_covid(r),
    ),
)


def task_truth(task: Task, records: Sequence[CaseRecord]) -> np.ndarray:
    """Per record: 1 positive, 0 negative, -1 not part of the task (other source or label)."""
    out = np.full(len(records), -1, dtype=np.int64)
    for i, r in enumerate(records):
        if r.source != task.source:
            continue
        if task.positive(r):
            out[i] = 1
        elif task.negative(r):
            out[i] = 0
    return out


def retrieval_classes(records: Sequence[CaseRecord], scheme: str, vocab: Sequence[str]) -> np.ndarray:
    """Class index per record in ``vocab`` (-1: none)."""
    index = {c: i for i, c in enumerate(vocab)}
    return np.array([index.get(label_of(r, scheme), -1) for r in records], dtype=np.int64)


def vote_truth(records: Sequence[CaseRecord], scheme: str, vocab: Sequence[str]) -> np.ndarray:
    """Multi-hot [N, len(vocab)]: the record's class plus the class of each finding alone."""
    index = {c: i for i, c in enumerate(vocab)}
    y = np.zeros((len(records), len(vocab)), dtype=bool)
    prefix = scheme == "source_pathology"
    for i, r in enumerate(records):
        names = {label_of(r, scheme)}
        for f in r.findings or []:
            c = pathology_class([f])
            if c is not None:
                names.add(f"{r.source}:{c}" if prefix else c)
        for n in names:
            if n in index:
                y[i, index[n]] = True
    return y


def infer_vocab(records: Sequence[CaseRecord], scheme: str) -> list[str]:
    """Classes present in ``records`` (for checkpoints that carry no class list)."""
    from embed.labels import build_vocab

    return build_vocab([label_of(r, scheme) for r in records])
