"""Similar cases as a DICOM Key Object Selection (KOS) document, for the PACS the query came from.

A viewer that lists the query study shows the document as a key-object note
("Of Interest", series "Similar cases (cxr-search)"): it references the query
instance and the neighbour instances that live in the same PACS, and its text
holds the vote and the per-patient outcome summary. It carries the query
patient's and study's identity (copied from the query, as any object of that
study must) and the neighbours' UIDs: it is only ever sent back to the PACS that
holds them all (see :func:`embed.dicomweb.store_instance`).

highdicom builds the document. Its ``KeyObjectSelectionDocument`` refuses
evidence from more than one other study, although PS3.3 C.17.6.2.1 wants every
referenced instance, of any study, in the Current Requested Procedure Evidence
Sequence; so the document is built for the query study and the neighbours'
content items and evidence are added after, the way highdicom writes them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embed.errors import require

if TYPE_CHECKING:  # pydicom/highdicom load lazily (the `pacs` extra)
    from highdicom.ko import KeyObjectSelectionDocument
    from pydicom import Dataset

DEVICE_NAME = "cxr-search"
SERIES_DESCRIPTION = "Similar cases (cxr-search)"
_KOS_SERIES_NUMBER = 9901
_MAX_TEXT = 1024  # the Key Object Description is a TEXT item; keep it readable in a viewer's note


@dataclass(frozen=True)
class Neighbour:
    """One similar case that lives in the same PACS: its UIDs (from its DICOM header) and its rank."""

    study: str
    series: str
    sop: str
    sop_class: str
    rank: int
    similarity: float


def describe(vote: dict[str, float], prognosis: dict[str, Any], n_hits: int, n_referenced: int) -> str:
    """The note's text: the vote and the outcomes among the neighbours, no identifier of anyone."""
    lines = [f"{n_hits} most similar past cases (cxr-search; research use, not a medical device); "
             f"{n_referenced} of them referenced here."]
    if vote:
        lines.append("Vote: " + ", ".join(f"{name} {score:.2f}" for name, score in list(vote.items())[:6]) + ".")
    outcomes = []
    for name, o in prognosis.items():
        def _field(key: str) -> Any:
            return o.get(key) if isinstance(o, dict) else getattr(o, key, None)

        known, positive = _field("known"), _field("positive")
        patients, patients_pos = _field("patients_known"), _field("patients_positive")
        if patients:  # per patient (each patient's latest known outcome), the film count beside
            outcomes.append(f"{name} {patients_pos} of {patients} patients ({known} films)")
        elif known:
            outcomes.append(f"{name} {positive} of {known} films")
    if outcomes:
        lines.append("Outcomes among the neighbours: " + ", ".join(outcomes) + ".")
    text = " ".join(lines)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _device_uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[DEVICE_NAME]))


def build_kos(query: Dataset, neighbours: list[Neighbour], text: str) -> KeyObjectSelectionDocument:
    """A KOS document (pydicom Dataset) in the query's study referencing the query and ``neighbours``.

    ``query`` is the query instance's header (a pydicom Dataset with its UIDs and patient module).
    """
    hd = require("highdicom", "pip install 'cxr-search[pacs]'")
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_device_uid(), name=DEVICE_NAME),
    )
    ref = Dataset()
    ref.SOPClassUID, ref.SOPInstanceUID = query.SOPClassUID, query.SOPInstanceUID
    if "Rows" in query:
        ref.Rows, ref.Columns = query.Rows, query.Columns
    content = hd.ko.KeyObjectSelection(document_title=codes.DCM.OfInterest, referenced_objects=[ref],
                                       observer_device_context=observer, description=text)
    for attr in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime"):
        if attr not in query:
            setattr(query, attr, None)
    doc = hd.ko.KeyObjectSelectionDocument(
        evidence=[query], content=content, series_instance_uid=generate_uid(), series_number=_KOS_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=DEVICE_NAME,
    )
    doc.SeriesDescription = SERIES_DESCRIPTION
    _add_neighbours(hd, doc, [n for n in neighbours if n.sop != str(query.SOPInstanceUID)])
    return doc


def _add_neighbours(hd: Any, doc: Any, neighbours: list[Neighbour]) -> None:
    """Content items and evidence for the neighbours (see the module doc for why after construction)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if not neighbours:
        return
    root = doc.ContentSequence
    for n in sorted(neighbours, key=lambda n: n.rank):
        root.append(hd.sr.ImageContentItem(
            name=hd.sr.CodedConcept("260753009", "SCT", "Source"), referenced_sop_class_uid=n.sop_class,
            referenced_sop_instance_uid=n.sop, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    evidence = {str(s.StudyInstanceUID): s for s in doc.CurrentRequestedProcedureEvidenceSequence}
    grouped: dict[str, dict[str, list[Neighbour]]] = defaultdict(lambda: defaultdict(list))
    for n in neighbours:
        grouped[n.study][n.series].append(n)
    for study_uid, series in grouped.items():
        study_item = evidence.get(study_uid)
        if study_item is None:
            study_item = Dataset()
            study_item.StudyInstanceUID = study_uid
            study_item.ReferencedSeriesSequence = Sequence()
            doc.CurrentRequestedProcedureEvidenceSequence.append(study_item)
            evidence[study_uid] = study_item
        by_series = {str(s.SeriesInstanceUID): s for s in study_item.ReferencedSeriesSequence}
        for series_uid, items in series.items():
            series_item = by_series.get(series_uid)
            if series_item is None:
                series_item = Dataset()
                series_item.SeriesInstanceUID = series_uid
                series_item.ReferencedSOPSequence = Sequence()
                study_item.ReferencedSeriesSequence.append(series_item)
            for n in items:
                sop = Dataset()
                sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = n.sop_class, n.sop
                series_item.ReferencedSOPSequence.append(sop)


def read_kos(data: Dataset) -> KeyObjectSelectionDocument:
    """Parse and check a stored KOS document with highdicom (raises on an invalid one)."""
    hd = require("highdicom", "pip install 'cxr-search[pacs]'")
    return hd.ko.KeyObjectSelectionDocument.from_dataset(data)


def referenced_instances(doc: Dataset) -> list[str]:
    """SOP Instance UIDs referenced in the content tree, in order."""
    return [str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for item in doc.ContentSequence if "ReferencedSOPSequence" in item]
