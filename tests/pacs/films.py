"""Wrap shared PNG/JPEG films as DICOM CR/DX objects carrying age, sex and view, as a PACS would hold them.

The raw ids and names written here look like a hospital's (``MRN...``, ``Doe^...``)
so the tests can check that none of them leaves the reader.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation


@dataclass
class Film:
    """One generated DICOM instance and the facts the test knows about it."""

    data: bytes
    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str
    view: str
    sex: str | None
    age: float | None
    source_image: Path


def film_dicom(image: Path, *, patient_id: str, index: int, age: float | None, sex: str | None, view: str,
               modality: str, study_date: str, study_uid: str | None = None) -> Film:
    """A CR or DX instance (8 bits, MONOCHROME2, explicit little endian) from a PNG/JPEG film."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(Image.open(image).convert("L"), dtype=np.uint8)
    sop_class = CR_STORAGE if modality == "CR" else DX_STORAGE
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName = patient_id, f"Doe^Test{index}"
    ds.PatientBirthDate = "19500101"
    if sex:
        ds.PatientSex = sex
    if age is not None:
        ds.PatientAge = f"{int(age):03d}Y"
    ds.AccessionNumber, ds.StudyID = f"ACC{index:05d}", str(index)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = "101010"
    ds.ReferringPhysicianName = ""
    ds.InstitutionName = "Test General Hospital"
    ds.Modality, ds.BodyPartExamined = modality, "CHEST"
    ds.ViewPosition = "LL" if view == "LATERAL" else view.split()[0]
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return Film(buf.getvalue(), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                patient_id, view, sex, age, image)


def covid_films(root: Path, n: int) -> list[Film]:
    """``n`` frontal films of distinct covid-chestxray patients with age and sex, as CR/DX studies."""
    films: list[Film] = []
    seen: set[str] = set()
    with open(root / "metadata.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        path = root / (row.get("folder") or "images") / row["filename"]
        if (row["modality"] != "X-ray" or row["view"] not in ("PA", "AP") or not row["age"] or row["sex"] not in "MF"
                or row["patientid"] in seen or not path.is_file()):
            continue
        seen.add(row["patientid"])
        i = len(films)
        films.append(film_dicom(path, patient_id=f"MRN{70000 + i}", index=i, age=float(row["age"]), sex=row["sex"],
                                view=row["view"], modality="CR" if i % 2 == 0 else "DX",
                                study_date=f"202003{1 + i:02d}"))
        if len(films) == n:
            break
    return films
