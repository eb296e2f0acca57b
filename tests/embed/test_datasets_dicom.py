"""dicom reader: files found by content, metadata only through embed.deid, offsets per patient."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from embed.datasets import load_dataset  # noqa: E402
from tests.embed.datasets_fixtures import all_json, write_image  # noqa: E402


def write_dicom(path, patient_id, study_date, modality="CR", view="PA", sex="F", age="045Y"):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Zebedee^Quentin"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19500101"
    ds.InstitutionName = "Ygritte General Hospital"
    ds.AccessionNumber = "ACC998877"
    ds.StudyDate = study_date
    ds.Modality = modality
    ds.ViewPosition = view
    ds.PatientSex = sex
    ds.PatientAge = age
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_reads_tree_by_content_and_deidentifies(tmp_path):
    write_dicom(tmp_path / "a" / "IMG0001", "RAWPID123", "20200101")
    write_dicom(tmp_path / "a" / "IMG0002.dcm", "RAWPID123", "20200111", view="LL")
    write_dicom(tmp_path / "b" / "x.dcm", "RAWPID456", "20210505", sex="M", age="070Y")
    write_dicom(tmp_path / "b" / "ct.dcm", "RAWPID456", "20210505", modality="CT")
    write_image(tmp_path / "b" / "photo.png")
    (tmp_path / "README.txt").write_text("hello")
    load = load_dataset(f"dicom:{tmp_path}")
    recs = {r.case_id: r for r in load.records}
    assert sorted(recs) == ["dicom/a/IMG0001", "dicom/a/IMG0002.dcm", "dicom/b/x.dcm"]
    a1, a2, b = recs["dicom/a/IMG0001"], recs["dicom/a/IMG0002.dcm"], recs["dicom/b/x.dcm"]
    assert a1.patient == a2.patient != b.patient and a1.patient.startswith("p_")
    assert (a1.day_offset, a2.day_offset, b.day_offset) == (0.0, 10.0, 0.0)
    assert (a1.view, a2.view, b.sex, b.age) == ("PA", "LATERAL", "M", 70.0)
    assert a1.findings == [] and a1.extra["modality"] == "CR" and a1.extra["body_part"] == "CHEST"
    assert load.skipped_counts() == {"not a radiograph (modality CT)": 1, "not a DICOM file": 2}
    text = all_json(load.records)
    for secret in ("RAWPID", "Zebedee", "Quentin", "Ygritte", "ACC998877", "1950", "2020", "2021"):
        assert secret not in text


def test_real_dicom_files(shared_data, tmp_path):
    src = shared_data / "dicom"
    if not src.is_dir():
        pytest.skip("dicom not in shared data")
    # include the file without preamble or file meta, found by content
    shutil.copy(src / "CR-MONO1-10-chest.dcm", tmp_path / "noext")
    load = load_dataset(f"dicom:{tmp_path}")
    assert len(load.records) == 1 and load.records[0].extra["modality"] == "CR"
    load = load_dataset(f"dicom:{src}")
    assert len(load.records) >= 10 and not load.skipped
